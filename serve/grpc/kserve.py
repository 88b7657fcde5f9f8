"""inference.GRPCInferenceService: the KServe v2 protocol, on the stubs tritonclient ships,
so tritonclient.grpc (and any other KServe client) works unchanged."""

from __future__ import annotations


import numpy as np
from tritonclient.grpc import service_pb2 as kpb
from tritonclient.grpc import service_pb2_grpc as kpb_grpc

from .. import __version__
from ..core import InferenceCore
from ..core.decode import InputTensor, decode_inputs, resolve_outputs
from ..core.errors import invalid
from ..core.kserve import (EXTENSIONS, SERVER_NAME, classification_bytes, model_config, model_statistics,
                           statistics_models)
from .handler import handler, infer_args

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
        return kpb.ModelConfigResponse(config=model_config(self.core, model))

    @handler("kserve", "ModelStatistics", "name")
    def ModelStatistics(self, request, context):
        models = statistics_models(self.core.registry, request.name, request.version)
        return kpb.ModelStatisticsResponse(model_stats=[model_statistics(self.core, m) for m in models])

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
