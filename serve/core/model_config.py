"""A model's Triton configuration (ModelConfig, the record config.pbtxt is written in), as
KServe's model configuration extension reports it. The record is Triton's own schema,
generated into serve.gen by our codegen step (protobuf only, no grpc)."""

from __future__ import annotations

import json

from ..gen import model_config_pb2 as mc
from .device import instance_kind
from .inference import BatchPolicy
from .limits import Limits
from .registry import ServedModel
from .signature import TensorSpec

PLATFORM = "onnxruntime_onnx"


def model_config(model: ServedModel, limits: Limits, policy: BatchPolicy | None) -> mc.ModelConfig:
    """Triton's view of the model: with a dynamic batch axis, max_batch_size > 0 and dims
    without it; without one, max_batch_size 0 and the full shapes. `policy`: how the
    batcher batches the model's requests (None: it runs each request as it came).
    max_batch_size is the largest batch one run is given: the batcher's largest with a
    batcher (a larger request runs in runs of that size), the request limit without."""
    signature = model.signature
    batched = signature.batched
    classifier = signature.classifier

    def dims(spec: TensorSpec) -> list[int]:
        return list(spec.shape[1:] if batched else spec.shape)

    config = mc.ModelConfig(
        name=model.name, platform=PLATFORM, backend="onnxruntime",
        max_batch_size=(policy.max_batch if policy else limits.max_request_images) if batched else 0,
        input=[mc.ModelInput(name=t.name, data_type=mc.DataType.Value(f"TYPE_{t.datatype}"), dims=dims(t),
                             format=mc.ModelInput.FORMAT_NCHW if classifier and classifier.input is t
                             else mc.ModelInput.FORMAT_NONE)
               for t in signature.inputs],
        output=[mc.ModelOutput(name=t.name, data_type=mc.DataType.Value(f"TYPE_{t.datatype}"), dims=dims(t))
                for t in signature.outputs],
        instance_group=[mc.ModelInstanceGroup(
            kind=mc.ModelInstanceGroup.Kind.Value(instance_kind(model.provider)), count=1)],
    )
    if policy:
        config.dynamic_batching.max_queue_delay_microseconds = int(policy.delay_s * 1e6)
        config.dynamic_batching.preferred_batch_size.append(policy.max_batch)
        if policy.max_queue:
            config.dynamic_batching.default_queue_policy.max_queue_size = policy.max_queue
    config.parameters["execution_provider"].string_value = model.provider
    for key in ("dataset", "test_accuracy"):
        config.parameters[key].string_value = model.metadata.get(key, "")
    if model.labels:
        norm = model.normalization
        for key, value in (("labels", model.labels), ("mean", norm.mean), ("std", norm.std)):
            config.parameters[key].string_value = json.dumps(list(value))
    return config
