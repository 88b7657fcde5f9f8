"""The data plane: every use case of the server, one call each, in no protocol's terms.

A front end converts its request into a record of serve.core.records, makes one call here,
and converts the answer back; the data plane decides everything in between (which model,
decoding and checking, batching, running, encoding the outputs, statistics) and raises
RequestError, which the front end turns into its own status once, at its edge. So a
ModelInfer or a Predict request comes back to its front end once, with its answer.

    plane = DataPlane(registry, Limits(), Metrics())
    plane.admit(CALLS["infer"])                   # UNAVAILABLE once draining began
    response = plane.infer(InferRequest("lenet5-mnist", inputs=[InputTensor(...)]))
"""

from __future__ import annotations

import time

import numpy as np

from .. import __version__
from .batching import RunTiming
from .calls import Call
from .decode import decode_images, decode_inputs, decode_tensor, resolve_outputs
from .errors import invalid, unavailable
from .features import FeatureMaps
from .inference import InferenceCore
from .limits import DecodeBudget, Limits
from .metrics import Metrics
from .model_config import PLATFORM, model_config
from .preprocess import Preparer
from .ranking import check_top_k, classification_strings, rank
from .readiness import Readiness
from .records import (FeaturesRequest, FeaturesResponse, InferRequest, InferResponse, ModelMetadata,
                      ModelSummary, OutputTensor, Prediction, PredictRequest, PredictResponse, RepositoryEntry,
                      ServerMetadata)
from .registry import ModelRegistry, ServedModel
from .stats import ModelStatistics, RequestTimes

SERVER_NAME = "cnn-zoo"
# KServe v2 / Triton protocol extensions this server implements, as ServerMetadata lists them.
EXTENSIONS = ("classification", "model_configuration", "statistics")


class DataPlane:
    def __init__(self, registry: ModelRegistry, limits: Limits, metrics: Metrics, *,
                 strict_readiness: bool = True) -> None:
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self.engine = InferenceCore(registry, limits, metrics)
        self.readiness = Readiness(registry, strict_readiness)
        # Set once shutdown begins: inference calls arriving from then on are refused (admit());
        # those already admitted run to the end.
        self.draining = self.readiness.draining
        self.decode_budget = DecodeBudget(limits.decode_budget_bytes)
        self.feature_maps = FeatureMaps()

    # -- admission and health ---------------------------------------------------------

    def admit(self, call: Call) -> None:
        """As a request arrives: an inference call is refused (UNAVAILABLE) once draining
        began, else counted as admitted; any other call always passes."""
        if not call.inference:
            return
        if self.draining.is_set():
            raise unavailable("the server is shutting down")
        self.metrics.observe_admitted(call.name)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.readiness.server_ready()

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.readiness.model_ready(self.registry.lookup(name, version))

    # -- metadata -----------------------------------------------------------------------

    def server_metadata(self) -> ServerMetadata:
        providers = sorted({m.provider for m in self.registry.all_models() if m.ready})
        return ServerMetadata(SERVER_NAME, __version__, EXTENSIONS, tuple(providers))

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self.registry.get(name, version)
        return ModelMetadata(model.name, (model.version,), PLATFORM, model.signature.inputs,
                             model.signature.outputs, model.provider)

    def model_config(self, name: str, version: str = ""):
        """Triton's ModelConfig record (serve.gen.model_config_pb2) for the model."""
        model = self.registry.get(name, version)
        return model_config(model, self.limits, self.engine.policies.get(model.key))

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        """One version, every version of one model, or every model."""
        if name and version:
            models = [self.registry.lookup(name, version)]
        elif name:
            models = [m for m in self.registry.all_models() if m.name == self.registry.lookup(name).name]
        else:
            models = self.registry.all_models()
        return [self.engine.stats[m.key].snapshot(m.name, m.version) for m in models]

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return [RepositoryEntry(m.name, m.version, "READY" if m.ready else "UNAVAILABLE", m.error)
                for m in self.registry.all_models() if not ready_only or m.ready]

    def models(self) -> list[ModelSummary]:
        return [_summary(m) for m in self.registry.all_models()]

    def model(self, name: str, version: str = "") -> ModelSummary:
        return _summary(self.registry.lookup(name, version))

    # -- inference ------------------------------------------------------------------------

    def infer(self, request: InferRequest) -> InferResponse:
        """KServe ModelInfer: every input checked against the model's signature, the outputs
        asked for (or all), as tensors or classification strings."""
        model = self.registry.get(request.model_name, request.model_version)
        with self._counted(model) as record:
            start = time.perf_counter()
            with self.engine.expecting(model) as announcement:
                feed = decode_inputs(model, request.inputs, self.limits.max_request_images)
                outputs = resolve_outputs(model, [(o.name, o.classification) for o in request.outputs])
                decoded = time.perf_counter()
                timing = RunTiming()
                results = self.engine.infer_all(model, feed, request.deadline, timing, announcement)
            ran = time.perf_counter()
            tensors = tuple(_output(model, index, k, results[index]) for index, k in outputs)
            images = len(feed[model.input_name]) if model.signature.batched else 1
            record(images, start, decoded, ran, timing)
        return InferResponse(model.name, model.version, request.id, tensors)

    def predict(self, request: PredictRequest) -> PredictResponse:
        """Our Predict: images (or one pixel tensor) for an image classifier, preprocessed
        as its dataset's images were, answered with probabilities and the top k."""
        model = self.registry.get(request.model_name, request.model_version)
        model.classifier()  # FAILED_PRECONDITION for any other model, before decoding anything
        k = check_top_k(request.top_k, model)
        prepare = Preparer(model, request.preprocessing)
        with self._counted(model) as record:
            start = time.perf_counter()
            with self.engine.expecting(model) as announcement:
                x = self._pixels(request, model, prepare)
                decoded = time.perf_counter()
                timing = RunTiming()
                logits = self.engine.infer(model, x, request.deadline, timing, announcement)
            ran = time.perf_counter()
            done = list(zip(prepare.inverted, prepare.framed)) or [(False, False)] * len(logits)  # a tensor: as sent
            predictions = tuple(Prediction(r, inverted, framed)
                                for r, (inverted, framed) in zip(rank(logits, k, model.labels), done))
            record(len(x), start, decoded, ran, timing)
        return PredictResponse(model.name, model.version, model.provider, predictions)

    def _pixels(self, request: PredictRequest, model: ServedModel, prepare: Preparer):
        if request.images is not None:
            return decode_images(request.images, model, request.images_field, self.limits, self.decode_budget,
                                 request.deadline.time_left_s, prepare)
        if request.tensor is not None:
            return decode_tensor(model, model.classifier().input, request.tensor, self.limits.max_request_images,
                                 any_batch=True)
        raise invalid("input: neither tensor nor images is set; expected one of them")

    def features(self, request: FeaturesRequest) -> FeaturesResponse:
        """The output of every convolution and pooling layer for one image (the playground)."""
        model = self.registry.get(request.model_name, request.model_version)
        model.classifier()
        prepare = Preparer(model, request.preprocessing)
        x = decode_images([request.image], model, "images", self.limits, self.decode_budget, prepare=prepare)
        layers = self.feature_maps.compute(model, x)
        return FeaturesResponse(model.name, prepare.inverted[0], prepare.framed[0], x, tuple(layers))

    def _counted(self, model: ServedModel) -> "_Counted":
        """Statistics for one inference request: the stages of a success (given to the
        callable `with` yields), or the time to a failure."""
        return _Counted(self.engine.stats[model.key])

    def close(self) -> None:
        self.engine.close()


class _Counted:
    """DataPlane._counted's context (a class: a generator-based one costs a request
    several microseconds)."""

    __slots__ = ("counter", "start")

    def __init__(self, counter) -> None:
        self.counter = counter

    def __enter__(self):
        self.start = time.perf_counter()
        return self.record

    def record(self, images: int, began: float, decoded: float, ran: float, timing: RunTiming) -> None:
        done = time.perf_counter()
        self.counter.success(images, RequestTimes(compute_input=decoded - began,
                                                  queue=max(ran - decoded - timing.compute_s, 0.0),
                                                  compute_infer=timing.compute_s, compute_output=done - ran))

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self.counter.fail(time.perf_counter() - self.start)


def _output(model: ServedModel, index: int, k: int, array) -> OutputTensor:
    """One requested output: the tensor, or its top k as Triton's classification strings."""
    spec = model.signature.outputs[index]
    if k:
        classifier, k = model.signature.classifier, min(k, array.shape[1])
        labels = model.labels if classifier and spec is classifier.output else None
        return OutputTensor(spec.name, "BYTES", (len(array), k), texts=classification_strings(array, k, labels))
    return OutputTensor(spec.name, spec.datatype, tuple(array.shape), array=np.ascontiguousarray(array, spec.dtype))


def _summary(model: ServedModel) -> ModelSummary:
    accuracy = model.metadata.get("test_accuracy", "")
    return ModelSummary(
        name=model.name, version=model.version, ready=model.ready, error=model.error, provider=model.provider,
        dataset=model.metadata.get("dataset", ""), labels=tuple(model.labels), input_shape=tuple(model.input_shape),
        mean=tuple(model.normalization.mean), std=tuple(model.normalization.std),
        test_accuracy=float(accuracy) if accuracy else None, metadata=dict(model.metadata))
