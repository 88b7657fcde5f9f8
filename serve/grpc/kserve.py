"""inference.GRPCInferenceService: the KServe v2 protocol, on the stubs tritonclient ships,
so tritonclient.grpc (and any other KServe client) works unchanged."""

from __future__ import annotations

import json
import struct

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as kpb
from tritonclient.grpc import service_pb2_grpc as kpb_grpc

from .. import __version__
from ..core import InferenceCore
from ..core.decode import InputTensor, decode_inputs, resolve_outputs
from ..core.device import CUDA
from ..core.errors import invalid
from ..core.registry import ServedModel
from ..core.signature import TensorSpec
from .handler import handler, infer_args

SERVER_NAME = "cnn-zoo"
EXTENSIONS = ["classification", "model_configuration", "statistics"]
# The typed contents field that carries each datatype (FP16 travels only as raw bytes).
CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "BOOL": "bool_contents"}
PROVIDER_HEADER = "x-execution-provider"


def _tell_provider(context, providers: list[str]) -> None:
    """KServe's metadata messages have no field for it, so it travels as a response header."""
    context.send_initial_metadata(((PROVIDER_HEADER, ",".join(sorted(set(providers)))),))


class KServeServicer(kpb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    @handler("kserve", "ServerLive")
    def ServerLive(self, request, context):
        return kpb.ServerLiveResponse(live=True)

    @handler("kserve", "ServerReady")
    def ServerReady(self, request, context):
        return kpb.ServerReadyResponse(ready=self.core.readiness.server_ready())

    @handler("kserve", "ModelReady", "name")
    def ModelReady(self, request, context):
        model = self.core.registry.lookup(request.name, request.version)
        return kpb.ModelReadyResponse(ready=self.core.readiness.model_ready(model))

    @handler("kserve", "ServerMetadata")
    def ServerMetadata(self, request, context):
        _tell_provider(context, [m.provider for m in self.core.registry.models.values() if m.ready])
        return kpb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    @handler("kserve", "ModelMetadata", "name")
    def ModelMetadata(self, request, context):
        model = self.core.registry.get(request.name, request.version)
        _tell_provider(context, [model.provider])
        meta = kpb.ModelMetadataResponse.TensorMetadata
        return kpb.ModelMetadataResponse(
            name=model.name, versions=[model.version], platform="onnxruntime_onnx",
            inputs=[meta(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.signature.inputs],
            outputs=[meta(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.signature.outputs],
        )

    @handler("kserve", "ModelConfig", "name")
    def ModelConfig(self, request, context):
        model = self.core.registry.get(request.name, request.version)
        return kpb.ModelConfigResponse(config=self._config(model))

    def _config(self, model: ServedModel) -> mc.ModelConfig:
        """Triton's view of the model: with a dynamic batch axis, max_batch_size > 0 and dims
        without it; without one, max_batch_size 0 and the full shapes."""
        limits, signature = self.core.limits, model.signature
        batched = signature.batched
        classifier = signature.classifier

        def dims(spec: TensorSpec) -> list[int]:
            return list(spec.shape[1:] if batched else spec.shape)

        config = mc.ModelConfig(
            name=model.name, platform="onnxruntime_onnx", backend="onnxruntime",
            max_batch_size=limits.max_request_images if batched else 0,
            input=[mc.ModelInput(name=t.name, data_type=mc.DataType.Value(f"TYPE_{t.datatype}"), dims=dims(t),
                                 format=mc.ModelInput.FORMAT_NCHW if classifier and classifier.input is t
                                 else mc.ModelInput.FORMAT_NONE)
                   for t in signature.inputs],
            output=[mc.ModelOutput(name=t.name, data_type=mc.DataType.Value(f"TYPE_{t.datatype}"), dims=dims(t))
                    for t in signature.outputs],
            instance_group=[mc.ModelInstanceGroup(
                kind=mc.ModelInstanceGroup.KIND_GPU if model.provider == CUDA else mc.ModelInstanceGroup.KIND_CPU,
                count=1)],
        )
        if model.key in self.core.batchers:
            config.dynamic_batching.max_queue_delay_microseconds = int(limits.batch_delay_s * 1e6)
            config.dynamic_batching.preferred_batch_size.append(limits.max_batch)
        config.parameters["execution_provider"].string_value = model.provider
        for key in ("dataset", "test_accuracy"):
            config.parameters[key].string_value = model.metadata.get(key, "")
        if model.labels:
            norm = model.normalization
            for key, value in (("labels", model.labels), ("mean", norm.mean), ("std", norm.std)):
                config.parameters[key].string_value = json.dumps(list(value))
        return config

    @handler("kserve", "ModelStatistics", "name")
    def ModelStatistics(self, request, context):
        registry = self.core.registry
        if request.name and request.version:
            models = [registry.lookup(request.name, request.version)]
        elif request.name:
            models = [m for m in registry.all_models() if m.name == registry.lookup(request.name).name]
        else:
            models = registry.all_models()
        return kpb.ModelStatisticsResponse(model_stats=[self._stats(m) for m in models])

    def _stats(self, model: ServedModel) -> kpb.ModelStatistics:
        s, name = self.core.stats[model.key], model.name
        with s.lock:
            duration = kpb.StatisticDuration
            return kpb.ModelStatistics(
                name=name, version=model.version, last_inference=s.last_inference_ms,
                inference_count=s.inference_count, execution_count=s.execution_count,
                inference_stats=kpb.InferStatistics(
                    success=duration(count=s.success_count, ns=s.success_ns),
                    fail=duration(count=s.fail_count, ns=s.fail_ns),
                    compute_infer=duration(count=s.execution_count, ns=s.compute_ns)),
                batch_stats=[kpb.InferBatchStatistics(batch_size=size, compute_infer=duration(count=c, ns=ns))
                             for size, (c, ns) in sorted(s.batches.items())],
            )

    @handler("kserve", "RepositoryIndex")
    def RepositoryIndex(self, request, context):
        return kpb.RepositoryIndexResponse(models=[
            kpb.RepositoryIndexResponse.ModelIndex(
                name=m.name, version=m.version, state="READY" if m.ready else "UNAVAILABLE", reason=m.error)
            for m in self.core.registry.all_models()
            if not request.ready or m.ready])

    def _inputs(self, request) -> list[InputTensor]:
        """The request's tensors, from raw_input_contents (one per input) or typed contents."""
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise invalid(f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs; "
                          "expected one per input")
        tensors = []
        for i, tensor in enumerate(request.inputs):
            field = f"inputs[{i}]"
            typed = tensor.HasField("contents") and tensor.contents.ByteSize() > 0  # any typed value
            if raw:
                if typed:
                    raise invalid(f"{field}.contents and raw_input_contents are both set; expected only one")
                tensors.append(InputTensor(tensor.name, tensor.datatype, tensor.shape, field,
                                           data=raw[i], data_field=f"raw_input_contents[{i}]"))
            else:
                contents = CONTENTS.get(tensor.datatype, "")
                values = getattr(tensor.contents, contents) if contents else ()
                tensors.append(InputTensor(tensor.name, tensor.datatype, tensor.shape, field, values=values,
                                           values_field=f"{field}.contents.{contents or 'raw (only)'}"))
        return tensors

    @staticmethod
    def _wanted(request) -> list[tuple[str, int]]:
        return [(out.name, out.parameters["classification"].int64_param if "classification" in out.parameters
                 else 0) for out in request.outputs]

    @handler("kserve", "ModelInfer", "model_name")
    def ModelInfer(self, request, context):
        model = self.core.registry.get(request.model_name, request.model_version)
        with self.core.expecting(model) as announcement:
            feed = decode_inputs(model, self._inputs(request), self.core.limits.max_request_images)
            outputs = resolve_outputs(model, self._wanted(request))
            results = self.core.infer_all(model, feed, announcement=announcement, **infer_args(context))
        response = kpb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for index, k in outputs:
            spec, array = model.signature.outputs[index], results[index]
            tensor = response.outputs.add(name=spec.name)
            if k:
                classifier, k = model.signature.classifier, min(k, array.shape[1])
                labels = model.labels if classifier and spec is classifier.output else None
                tensor.datatype = "BYTES"
                tensor.shape.extend([len(array), k])
                response.raw_output_contents.append(classification_bytes(array, k, labels))
            else:
                tensor.datatype = spec.datatype
                tensor.shape.extend(array.shape)
                response.raw_output_contents.append(np.ascontiguousarray(array, spec.dtype).tobytes())
        return response


def classification_bytes(logits: np.ndarray, k: int, labels: list[str] | None) -> bytes:
    """Triton's classification extension: per image, the top k as 'value:index:label', as
    BYTES elements (each a 4-byte little-endian length, then the bytes)."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    chunks = []
    for row, top in zip(logits, order):
        for i in top:
            text = (f"{row[i]:f}:{i}:{labels[i]}" if labels else f"{row[i]:f}:{i}").encode()
            chunks.append(struct.pack("<I", len(text)) + text)
    return b"".join(chunks)

