"""zoo.v1.Predictor: our own API. Each method converts the protobuf request into the data
plane's record, makes one data-plane call, and converts the answer back."""

from __future__ import annotations

import dataclasses

from ..core.preprocess import Preprocessing
from ..core.records import InputTensor, ModelSummary, PredictRequest
from ..gen import predictor_pb2 as pb
from ..gen import predictor_pb2_grpc as pb_grpc
from . import tracing
from .handler import deadline, handler

TENSOR_DATATYPES = {pb.DTYPE_FLOAT32: "FP32", pb.DTYPE_UINT8: "UINT8"}


def model_info(summary: ModelSummary) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=summary.name, version=summary.version, ready=summary.ready, error=summary.error,
        execution_provider=summary.provider, dataset=summary.dataset, labels=summary.labels,
        input_shape=summary.input_shape,
        mean=summary.mean[0], std=summary.std[0],  # the first channel's; metadata holds every channel's
        test_accuracy=summary.test_accuracy or 0.0, metadata=summary.metadata,
    )


def _tensor(tensor: pb.Tensor) -> InputTensor:
    refusal = ""
    if tensor.dtype not in TENSOR_DATATYPES:
        name = pb.DType.Name(tensor.dtype) if tensor.dtype in pb.DType.values() else str(tensor.dtype)
        refusal = (f"tensor.dtype: {name} is not supported; expected DTYPE_FLOAT32 (normalized) "
                   "or DTYPE_UINT8 (raw pixels)")
    return InputTensor("", TENSOR_DATATYPES.get(tensor.dtype, ""), tensor.shape, "tensor", data=tensor.data,
                       data_field="tensor.data", refusal=refusal)


def predict_request(request: pb.PredictRequest, context) -> PredictRequest:
    kind = request.WhichOneof("input")
    return PredictRequest(
        request.model, request.version,
        images=request.images.images if kind == "images" else None, images_field="images.images",
        tensor=_tensor(request.tensor) if kind == "tensor" else None, top_k=request.top_k,
        preprocessing=Preprocessing(auto_invert=not request.keep_polarity, frame=not request.keep_framing),
        deadline=deadline(context), trace=tracing.current())


class PredictorServicer(pb_grpc.PredictorServicer):
    def __init__(self, plane) -> None:
        self.plane = plane

    @handler("predictor", "Predict", "predict", "model")
    def Predict(self, request: pb.PredictRequest, context) -> pb.PredictResponse:
        answer = self.plane.predict(predict_request(request, context))
        return pb.PredictResponse(model=answer.model_name, version=answer.model_version,
                                  execution_provider=answer.provider, predictions=[
            pb.Prediction(logits=p.ranked.logits, probabilities=p.ranked.probabilities, inverted=p.inverted,
                          framed=p.framed, top_k=[pb.ClassScore(**dataclasses.asdict(s)) for s in p.ranked.top_k])
            for p in answer.predictions])

    @handler("predictor", "ListModels", "list_models")
    def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info(m) for m in self.plane.models()])

    @handler("predictor", "GetModel", "model_info", "model")
    def GetModel(self, request: pb.GetModelRequest, context) -> pb.ModelInfo:
        return model_info(self.plane.model(request.model, request.version))
