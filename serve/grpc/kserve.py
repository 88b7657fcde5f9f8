"""inference.GRPCInferenceService: the KServe v2 protocol, on the stubs tritonclient ships,
so tritonclient.grpc (and any other KServe client) works unchanged."""

from __future__ import annotations

import struct

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as kpb
from tritonclient.grpc import service_pb2_grpc as kpb_grpc

from .. import __version__
from ..core import InferenceCore
from ..core.decode import batch_from_shape, decode_array, from_array
from ..core.device import CUDA
from ..core.errors import invalid
from ..core.registry import ServedModel
from .handler import handler, infer_args

SERVER_NAME = "cnn-zoo"
EXTENSIONS = ["classification", "model_configuration", "statistics"]
DATATYPES = {"FP32": "float32", "UINT8": "uint8"}
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
        return kpb.ModelMetadataResponse(
            name=model.name, versions=[model.version], platform="onnxruntime_onnx",
            inputs=[kpb.ModelMetadataResponse.TensorMetadata(name=model.input_name, datatype="FP32",
                                                             shape=model.input_shape)],
            outputs=[kpb.ModelMetadataResponse.TensorMetadata(name=model.output_name, datatype="FP32",
                                                              shape=[-1, model.num_classes])],
        )

    @handler("kserve", "ModelConfig", "name")
    def ModelConfig(self, request, context):
        model = self.core.registry.get(request.name, request.version)
        return kpb.ModelConfigResponse(config=self._config(model))

    def _config(self, model: ServedModel) -> mc.ModelConfig:
        limits = self.core.limits
        config = mc.ModelConfig(
            name=model.name, platform="onnxruntime_onnx", backend="onnxruntime",
            max_batch_size=limits.max_request_images,
            input=[mc.ModelInput(name=model.input_name, data_type=mc.TYPE_FP32,
                                 format=mc.ModelInput.FORMAT_NCHW, dims=model.input_shape[1:])],
            output=[mc.ModelOutput(name=model.output_name, data_type=mc.TYPE_FP32, dims=[model.num_classes])],
            instance_group=[mc.ModelInstanceGroup(
                kind=mc.ModelInstanceGroup.KIND_GPU if model.provider == CUDA else mc.ModelInstanceGroup.KIND_CPU,
                count=1)],
        )
        if limits.max_batch > 0:
            config.dynamic_batching.max_queue_delay_microseconds = int(limits.batch_delay_s * 1e6)
            config.dynamic_batching.preferred_batch_size.append(limits.max_batch)
        config.parameters["execution_provider"].string_value = model.provider
        for key in ("dataset", "labels", "mean", "std", "test_accuracy"):
            config.parameters[key].string_value = model.metadata.get(key, "")
        return config

    @handler("kserve", "ModelStatistics", "name")
    def ModelStatistics(self, request, context):
        names = [self.core.registry.lookup(request.name, request.version).name] if request.name \
            else self.core.registry.names()
        return kpb.ModelStatisticsResponse(model_stats=[self._stats(n) for n in names])

    def _stats(self, name: str) -> kpb.ModelStatistics:
        s, model = self.core.stats[name], self.core.registry.models[name]
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
            for _, m in sorted(self.core.registry.models.items())
            if not request.ready or m.ready])

    def _input_batch(self, request, model: ServedModel) -> np.ndarray:
        if len(request.inputs) != 1:
            raise invalid(f"inputs: {len(request.inputs)} tensors given; {model.name} takes exactly one, "
                          f"named {model.input_name!r}")
        tensor = request.inputs[0]
        if tensor.name != model.input_name:
            raise invalid(f"inputs[0].name: {tensor.name[:80]!r} is not this model's input; expected "
                          f"{model.input_name!r}")
        if tensor.datatype not in DATATYPES:
            raise invalid(f"inputs[0].datatype: {tensor.datatype[:20]!r} is not supported; expected FP32 "
                          "(normalized) or UINT8 (raw pixels)")
        n = batch_from_shape(list(tensor.shape), "inputs[0].shape", self.core.limits.max_request_images)
        typed = tensor.contents.fp32_contents if tensor.datatype == "FP32" else tensor.contents.uint_contents
        has_typed = tensor.HasField("contents") and tensor.contents.ByteSize() > 0  # any typed value
        if request.raw_input_contents:
            if has_typed:
                raise invalid("inputs[0].contents and raw_input_contents are both set; expected only one")
            if len(request.raw_input_contents) != 1:
                raise invalid(f"raw_input_contents: {len(request.raw_input_contents)} entries for 1 input")
            return decode_array(request.raw_input_contents[0], DATATYPES[tensor.datatype], n, model,
                                "raw_input_contents[0]")
        expected = n * 28 * 28
        if len(typed) != expected:
            field = "fp32_contents" if tensor.datatype == "FP32" else "uint_contents"
            raise invalid(f"inputs[0].contents.{field}: {len(typed)} values do not match shape "
                          f"{list(tensor.shape)}, which needs {expected}")
        if tensor.datatype == "UINT8":
            values = np.asarray(typed, dtype=np.uint32)
            if values.size and values.max() > 255:
                raise invalid(f"inputs[0].contents.uint_contents: value {int(values.max())} exceeds 255 for UINT8")
            array = values.astype(np.uint8)
        else:
            array = np.asarray(typed, dtype=np.float32)
        return from_array(array.reshape(n, 1, 28, 28), model, "inputs[0].contents")

    def _outputs(self, request, model: ServedModel) -> list[tuple[str, int]]:
        """(name, classification count or 0) per requested output, in the requested order."""
        if not request.outputs:
            return [(model.output_name, 0)]
        wanted = []
        for i, out in enumerate(request.outputs):
            if out.name != model.output_name:
                raise invalid(f"outputs[{i}].name: {out.name[:80]!r} is not an output of {model.name}; "
                              f"expected {model.output_name!r}")
            k = out.parameters["classification"].int64_param if "classification" in out.parameters else 0
            if k < 0:
                raise invalid(f"outputs[{i}].parameters.classification: {k} is negative")
            wanted.append((out.name, min(int(k), model.num_classes)))
        return wanted

    @handler("kserve", "ModelInfer", "model_name")
    def ModelInfer(self, request, context):
        model = self.core.registry.get(request.model_name, request.model_version)
        with self.core.expecting(model) as announcement:
            x = self._input_batch(request, model)
            outputs = self._outputs(request, model)
            logits = self.core.infer(model, x, announcement=announcement, **infer_args(context))
        response = kpb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for name, k in outputs:
            tensor = response.outputs.add(name=name)
            if k:
                tensor.datatype = "BYTES"
                tensor.shape.extend([len(logits), k])
                response.raw_output_contents.append(classification_bytes(logits, k, model.labels))
            else:
                tensor.datatype = "FP32"
                tensor.shape.extend(logits.shape)
                response.raw_output_contents.append(logits.astype("<f4").tobytes())
        return response


def classification_bytes(logits: np.ndarray, k: int, labels: list[str]) -> bytes:
    """Triton's classification extension: per image, the top k as 'value:index:label', as
    BYTES elements (each a 4-byte little-endian length, then the bytes)."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    chunks = []
    for row, top in zip(logits, order):
        for i in top:
            text = f"{row[i]:f}:{i}:{labels[i]}".encode()
            chunks.append(struct.pack("<I", len(text)) + text)
    return b"".join(chunks)

