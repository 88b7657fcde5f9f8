"""inference.GRPCInferenceService: the KServe v2 protocol, on stubs generated from Triton's
own .proto files (serve/gen), so tritonclient.grpc and any other KServe client work
unchanged. Each method converts the protobuf request into the data plane's record, makes
one data-plane call, and converts the answer back."""

from __future__ import annotations

from ..core.errors import invalid
from ..core.records import InferRequest, InputTensor, RequestedOutput
from ..core.stats import BATCH_DURATIONS, ModelStatistics
from ..gen import grpc_service_pb2 as kpb
from ..gen import grpc_service_pb2_grpc as kpb_grpc
from . import tracing
from .handler import deadline, handler

# The typed contents field that carries each datatype (FP16 travels only as raw bytes).
CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "BOOL": "bool_contents"}
PROVIDER_HEADER = "x-execution-provider"


def _tell_provider(context, providers) -> None:
    """KServe's metadata messages have no field for it, so it travels as a response header."""
    context.send_initial_metadata(((PROVIDER_HEADER, ",".join(sorted(set(providers)))),))


def inputs_of(request: kpb.ModelInferRequest) -> list[InputTensor]:
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


def outputs_of(request: kpb.ModelInferRequest) -> list[RequestedOutput]:
    return [RequestedOutput(out.name, out.parameters["classification"].int64_param
                            if "classification" in out.parameters else 0) for out in request.outputs]


def statistics_message(stats: ModelStatistics) -> kpb.ModelStatistics:
    duration = kpb.StatisticDuration
    return kpb.ModelStatistics(
        name=stats.name, version=stats.version, last_inference=stats.last_inference,
        inference_count=stats.inference_count, execution_count=stats.execution_count,
        inference_stats=kpb.InferStatistics(**{key: duration(count=d.count, ns=d.ns)
                                               for key, d in stats.inference_stats.items()}),
        batch_stats=[kpb.InferBatchStatistics(batch_size=b.batch_size, **{
            key: duration(count=getattr(b, key).count, ns=getattr(b, key).ns) for key in BATCH_DURATIONS})
            for b in stats.batch_stats])


class KServeServicer(kpb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane) -> None:
        self.plane = plane

    @handler("kserve", "ServerLive", "server_live")
    def ServerLive(self, request, context):
        return kpb.ServerLiveResponse(live=self.plane.live())

    @handler("kserve", "ServerReady", "server_ready")
    def ServerReady(self, request, context):
        return kpb.ServerReadyResponse(ready=self.plane.ready())

    @handler("kserve", "ModelReady", "model_ready", "name")
    def ModelReady(self, request, context):
        return kpb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    @handler("kserve", "ServerMetadata", "server_metadata")
    def ServerMetadata(self, request, context):
        meta = self.plane.server_metadata()
        _tell_provider(context, meta.providers)
        return kpb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=meta.extensions)

    @handler("kserve", "ModelMetadata", "model_metadata", "name")
    def ModelMetadata(self, request, context):
        meta = self.plane.model_metadata(request.name, request.version)
        _tell_provider(context, [meta.provider])
        tensor = kpb.ModelMetadataResponse.TensorMetadata
        return kpb.ModelMetadataResponse(
            name=meta.name, versions=meta.versions, platform=meta.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs])

    @handler("kserve", "ModelConfig", "model_config", "name")
    def ModelConfig(self, request, context):
        return kpb.ModelConfigResponse(config=self.plane.model_config(request.name, request.version))

    @handler("kserve", "ModelStatistics", "model_statistics", "name")
    def ModelStatistics(self, request, context):
        return kpb.ModelStatisticsResponse(model_stats=[
            statistics_message(s) for s in self.plane.statistics(request.name, request.version)])

    @handler("kserve", "RepositoryIndex", "repository_index")
    def RepositoryIndex(self, request, context):
        return kpb.RepositoryIndexResponse(models=[
            kpb.RepositoryIndexResponse.ModelIndex(name=e.name, version=e.version, state=e.state, reason=e.reason)
            for e in self.plane.repository_index(request.ready)])

    @handler("kserve", "RepositoryModelLoad", "repository_load", "model_name")
    def RepositoryModelLoad(self, request, context):
        self.plane.load_model(request.model_name)
        return kpb.RepositoryModelLoadResponse()

    @handler("kserve", "RepositoryModelUnload", "repository_unload", "model_name")
    def RepositoryModelUnload(self, request, context):
        self.plane.unload_model(request.model_name)
        return kpb.RepositoryModelUnloadResponse()

    @handler("kserve", "ModelInfer", "infer", "model_name")
    def ModelInfer(self, request, context):
        answer = self.plane.infer(InferRequest(request.model_name, request.model_version, request.id,
                                               inputs_of(request), outputs_of(request), deadline(context),
                                               tracing.current()))
        response = kpb.ModelInferResponse(model_name=answer.model_name, model_version=answer.model_version,
                                          id=answer.id)
        for tensor in answer.outputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.append(tensor.raw())
        return response
