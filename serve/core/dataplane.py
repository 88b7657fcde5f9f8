"""The data plane: every use case of the server, one call each, in no protocol's terms.

A front end converts its request into a record of serve.core.records, makes one call here,
and converts the answer back; the data plane decides everything in between (which model,
decoding and checking, batching, running, encoding the outputs, statistics) and raises
RequestError, which the front end turns into its own status once, at its edge. So a
ModelInfer or a Predict request comes back to its front end once, with its answer.

    plane = DataPlane(registry, Limits(), Metrics())
    ticket = plane.admit(CALLS["infer"])          # UNAVAILABLE once draining began
    response = plane.infer(InferRequest("lenet5-mnist", inputs=[InputTensor(...)]))
    ticket.end()                                  # once the call has ended, however it ended
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time

import numpy as np

from .. import __version__
from .architecture import Architecture, architecture
from .admission import UNCOUNTED, OpenCalls, Ticket
from .batching import RunTiming
from .calls import Call
from .decode import decode_images, decode_inputs, decode_tensor, resolve_outputs
from .control import ControlSettings, ModelControl
from .errors import Code, RequestError, failed_precondition, invalid, unavailable
from .explain import Explanation, explain
from .features import FeatureMaps
from .inference import InferenceCore
from .limits import DecodeBudget, Limits
from .metrics import Metrics
from .model_config import PLATFORM, model_config
from .preprocess import Preparer
from .ranking import check_top_k, classification_strings, rank
from .readiness import Readiness
from .records import (ExplainRequest, FeaturesRequest, FeaturesResponse, InferRequest, InferResponse, ModelMetadata,
                      ModelSummary, OutputTensor, Prediction, PredictRequest, PredictResponse, RepositoryEntry,
                      ServerMetadata)
from .registry import ModelRegistry, ServedModel
from .stats import ModelStatistics, RequestTimes
from .tracing import RequestTrace, Stages

SERVER_NAME = "cnn-zoo"
# KServe v2 / Triton protocol extensions this server implements, as ServerMetadata lists them.
EXTENSIONS = ("classification", "binary_tensor_data", "model_configuration", "statistics")


class DataPlane:
    def __init__(self, registry: ModelRegistry, limits: Limits, metrics: Metrics, *,
                 strict_readiness: bool = True, control: ControlSettings | None = None, tracing=None) -> None:
        """`control`: how the served models change (serve.core.control); None: they are the
        registry's, as given, and never change. `tracing`: a serve.core.otel Tracer the front
        ends trace inference requests with (None: off)."""
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self.tracing = tracing
        self.engine = InferenceCore(registry, limits, metrics)
        self.readiness = Readiness(registry, strict_readiness,
                                   ready_with_none=control is not None and control.mode == "explicit")
        # Set once shutdown begins: inference calls arriving from then on are refused (admit());
        # those already admitted run to the end.
        self.draining = self.readiness.draining
        self.open_calls = OpenCalls()  # admitted inference calls not yet ended: a drain waits for them
        self.decode_budget = DecodeBudget(limits.decode_budget_bytes)
        self.feature_maps = FeatureMaps()
        self.control = None if control is None else ModelControl(registry, self.engine, control,
                                                                 on_retire=self.feature_maps.discard)
        self._in_flight = 0  # inference requests between their model's lookup and their answer
        self._in_flight_lock = threading.Lock()

    # -- admission and health ---------------------------------------------------------

    def admit(self, call: Call) -> Ticket:
        """As a request arrives: an inference call is refused (UNAVAILABLE) once draining
        began, else counted as admitted and open until the front end ends its ticket; any
        other call always passes (its ticket counts nothing)."""
        if not call.inference:
            return UNCOUNTED
        ticket = self.open_calls.open()  # before the check: a drain that began after it waits for this call
        if self.draining.is_set():
            ticket.end()
            raise unavailable("the server is shutting down")
        self.metrics.observe_admitted(call.name)
        return ticket

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.readiness.server_ready()

    def model_ready(self, name: str, version: str = "") -> bool:
        """Whether the model serves; False (not NOT_FOUND) for one of the repository that is not
        loaded (model control), as Triton answers."""
        try:
            model = self.registry.lookup(name, version)
        except RequestError as e:
            if e.code is Code.NOT_FOUND and self.control is not None and self.control.in_repository(name):
                return False
            raise
        return self.readiness.model_ready(model)

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
        return model_config(model, self.limits, model.policy)

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        """One version, every version of one model, or every model."""
        if name and version:
            models = [self.registry.lookup(name, version)]
        elif name:
            models = [m for m in self.registry.all_models() if m.name == self.registry.lookup(name).name]
        else:
            models = self.registry.all_models()
        return [m.stats.snapshot(m.name, m.version) for m in models]

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        if self.control is not None:
            return self.control.index(ready_only)
        return [RepositoryEntry(m.name, m.version, "READY" if m.ready else "UNAVAILABLE", m.error)
                for m in self.registry.all_models() if not ready_only or m.ready]

    def load_model(self, name: str) -> None:
        """Triton's repository extension: load (or reload) a model (explicit model control)."""
        self._control().load(name)

    def unload_model(self, name: str) -> None:
        self._control().unload(name)

    def _control(self) -> ModelControl:
        if self.control is None:
            raise failed_precondition("this server's models are fixed: loading and unloading are not allowed")
        return self.control

    def models(self) -> list[ModelSummary]:
        return [_summary(m) for m in self.registry.all_models()]

    def model(self, name: str, version: str = "") -> ModelSummary:
        return _summary(self.registry.lookup(name, version))

    # -- inference ------------------------------------------------------------------------

    def infer(self, request: InferRequest) -> InferResponse:
        """KServe ModelInfer: every input checked against the model's signature, the outputs
        asked for (or all), as tensors or classification strings."""
        with self._serving(request.model_name, request.model_version, request.trace) as (model, record):
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
        with self._serving(request.model_name, request.model_version, request.trace) as (model, record):
            model.classifier()  # FAILED_PRECONDITION for any other model, before decoding anything
            k = check_top_k(request.top_k, model)
            prepare = Preparer(model, request.preprocessing)
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
                                 any_batch=True, finite=True)
        raise invalid("input: neither tensor nor images is set; expected one of them")

    def features(self, request: FeaturesRequest) -> FeaturesResponse:
        """The output of every convolution and pooling layer for one image (the playground)."""
        with self._one_image(request) as (model, prepare, x):
            layers = self.feature_maps.compute(model, x)
        return FeaturesResponse(model.name, prepare.inverted[0], prepare.framed[0], x, tuple(layers))

    def explain(self, request: ExplainRequest) -> Explanation:
        """One value of a feature map (or a dense layer's unit) for one image, and how the
        model computed it, from the same run as the feature maps."""
        with self._one_image(request) as (model, prepare, x):
            answer = explain(self.feature_maps, model, x, request.position)
        return dataclasses.replace(answer, inverted=prepare.inverted[0], framed=prepare.framed[0])

    def architecture(self, name: str, version: str = "") -> Architecture:
        """Every layer of any served model: shapes, output-size formulas, parameter counts."""
        return architecture(self.feature_maps, self.registry.get(name, version))

    @contextlib.contextmanager
    def _one_image(self, request: FeaturesRequest | ExplainRequest):
        """The image classifier a playground request names (leased), its preprocessing, and
        the image decoded."""
        with self._in_flight_request(), self.registry.lease(request.model_name, request.model_version) as model:
            model.classifier()
            prepare = Preparer(model, request.preprocessing)
            x = decode_images([request.image], model, "images", self.limits, self.decode_budget, prepare=prepare)
            yield model, prepare, x

    def in_flight(self) -> int:
        """Inference requests being decoded, queued, run or encoded right now."""
        return self._in_flight

    @contextlib.contextmanager
    def _in_flight_request(self):
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    @contextlib.contextmanager
    def _serving(self, name: str, version: str, trace: RequestTrace | None = None):
        """The ready model for one inference request, leased (a version replaced meanwhile
        retires after it), with the request's statistics: the stages of a success (given to
        the callable yielded with it), or the time to a failure; and its trace, if it has
        one, told the same."""
        with self._in_flight_request(), self.registry.lease(name, version) as model:
            start = time.perf_counter()
            counter = model.stats
            if trace is not None:
                trace.served_by(model.name, model.version)

            def record(images: int, began: float, decoded: float, ran: float, timing: RunTiming) -> None:
                done = time.perf_counter()
                counter.success(images, RequestTimes(compute_input=decoded - began, queue=timing.queue_s,
                                                     compute_infer=timing.compute_s, compute_output=done - ran,
                                                     total=done - began))
                if trace is not None:
                    trace.answered(images, Stages(began, decoded, ran, timing.compute_s, done, timing.queue_s))

            try:
                yield model, record
            except BaseException:
                counter.fail(time.perf_counter() - start)
                raise

    def close(self, timeout: float = 5.0) -> None:
        """Stop changing models; refuse new runs and wait up to `timeout` for the batchers' running ones."""
        if self.control is not None:
            self.control.stop()
        self.engine.close(timeout)


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
