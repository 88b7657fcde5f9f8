"""zoo.v1.Predictor: our own API."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core import InferenceCore
from ..core.decode import InputTensor, decode_images, decode_tensor
from ..core.errors import invalid
from ..core.preprocess import Preparer, Preprocessing
from ..core.ranking import check_top_k, rank
from ..core.registry import ServedModel
from ..gen import predictor_pb2 as pb
from ..gen import predictor_pb2_grpc as pb_grpc
from .handler import handler, infer_args

TENSOR_DATATYPES = {pb.DTYPE_FLOAT32: "FP32", pb.DTYPE_UINT8: "UINT8"}


def model_info(model: ServedModel) -> pb.ModelInfo:
    norm = model.normalization
    return pb.ModelInfo(
        name=model.name, version=model.version, ready=model.ready, error=model.error,
        execution_provider=model.provider, dataset=model.metadata.get("dataset", ""),
        labels=model.labels, input_shape=model.input_shape,
        mean=norm.mean[0], std=norm.std[0],  # the first channel's; metadata holds every channel's
        test_accuracy=float(model.metadata.get("test_accuracy", 0) or 0), metadata=model.metadata,
    )


class PredictorServicer(pb_grpc.PredictorServicer):
    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    def _batch(self, request: pb.PredictRequest, model: ServedModel, time_left_s: float | None,
               prepare: Preparer) -> np.ndarray:
        limit = self.core.limits.max_request_images
        kind = request.WhichOneof("input")
        if kind is None:
            raise invalid("input: neither tensor nor images is set; expected one of them")
        if kind == "images":
            return decode_images(request.images.images, model, "images.images", self.core.limits,
                                 self.core.decode_budget, time_left_s, prepare)
        tensor = request.tensor
        if tensor.dtype not in TENSOR_DATATYPES:
            name = pb.DType.Name(tensor.dtype) if tensor.dtype in pb.DType.values() else str(tensor.dtype)
            raise invalid(f"tensor.dtype: {name} is not supported; expected DTYPE_FLOAT32 (normalized) "
                          "or DTYPE_UINT8 (raw pixels)")
        spec = model.classifier().input
        return decode_tensor(model, spec, InputTensor(spec.name, TENSOR_DATATYPES[tensor.dtype], tensor.shape,
                                                      "tensor", data=tensor.data, data_field="tensor.data"), limit,
                             any_batch=True)

    @handler("predictor", "Predict", "model")
    def Predict(self, request: pb.PredictRequest, context) -> pb.PredictResponse:
        model = self.core.registry.get(request.model, request.version)
        model.classifier()  # FAILED_PRECONDITION for any other model, before decoding anything
        k = check_top_k(request.top_k, model)
        prepare = Preparer(model, Preprocessing(auto_invert=not request.keep_polarity,
                                                frame=not request.keep_framing))
        with self.core.expecting(model) as announcement:
            x = self._batch(request, model, context.time_remaining(), prepare)
            logits = self.core.infer(model, x, announcement=announcement, **infer_args(context))
        done = list(zip(prepare.inverted, prepare.framed)) or [(False, False)] * len(logits)  # a tensor: as sent
        predictions = [pb.Prediction(logits=r.logits, probabilities=r.probabilities, inverted=inverted, framed=framed,
                                     top_k=[pb.ClassScore(**dataclasses.asdict(s)) for s in r.top_k])
                       for r, (inverted, framed) in zip(rank(logits, k, model.labels), done)]
        return pb.PredictResponse(model=model.name, version=model.version,
                                  execution_provider=model.provider, predictions=predictions)

    @handler("predictor", "ListModels")
    def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info(m) for m in self.core.registry.all_models()])

    @handler("predictor", "GetModel", "model")
    def GetModel(self, request: pb.GetModelRequest, context) -> pb.ModelInfo:
        return model_info(self.core.registry.lookup(request.model, request.version))
