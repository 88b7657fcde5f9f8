"""What the KServe v2 front ends (gRPC and HTTP/REST) share: the server's name and
extensions, a model's Triton configuration and statistics, and the classification
extension's strings. The messages are tritonclient's protobuf records (the gRPC front
end sends them as they are, the HTTP one as their JSON form)."""

from __future__ import annotations

import json
import struct

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as kpb

from .device import CUDA
from .inference import InferenceCore
from .registry import ModelRegistry, ServedModel
from .signature import TensorSpec

SERVER_NAME = "cnn-zoo"
EXTENSIONS = ["classification", "model_configuration", "statistics"]


def model_config(core: InferenceCore, model: ServedModel) -> mc.ModelConfig:
    """Triton's view of the model: with a dynamic batch axis, max_batch_size > 0 and dims
    without it; without one, max_batch_size 0 and the full shapes."""
    limits, signature = core.limits, model.signature
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
    if model.key in core.batchers:
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


def statistics_models(registry: ModelRegistry, name: str, version: str) -> list[ServedModel]:
    """The models a statistics request names: one version, every version of one model, or all."""
    if name and version:
        return [registry.lookup(name, version)]
    if name:
        return [m for m in registry.all_models() if m.name == registry.lookup(name).name]
    return registry.all_models()


def model_statistics(core: InferenceCore, model: ServedModel) -> kpb.ModelStatistics:
    s = core.stats[model.key]
    with s.lock:
        duration = kpb.StatisticDuration
        return kpb.ModelStatistics(
            name=model.name, version=model.version, last_inference=s.last_inference_ms,
            inference_count=s.inference_count, execution_count=s.execution_count,
            inference_stats=kpb.InferStatistics(
                success=duration(count=s.success_count, ns=s.success_ns),
                fail=duration(count=s.fail_count, ns=s.fail_ns),
                compute_infer=duration(count=s.execution_count, ns=s.compute_ns)),
            batch_stats=[kpb.InferBatchStatistics(batch_size=size, compute_infer=duration(count=c, ns=ns))
                         for size, (c, ns) in sorted(s.batches.items())],
        )


def classification_strings(logits: np.ndarray, k: int, labels: list[str] | None) -> list[str]:
    """Triton's classification extension: per image, the top k as 'value:index:label'
    ('value:index' without labels), row after row."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return [f"{row[i]:f}:{i}:{labels[i]}" if labels else f"{row[i]:f}:{i}"
            for row, top in zip(logits, order) for i in top]


def classification_bytes(logits: np.ndarray, k: int, labels: list[str] | None) -> bytes:
    """The same as BYTES elements on the wire: each a 4-byte little-endian length, then the bytes."""
    return bytes_elements(classification_strings(logits, k, labels))


def bytes_elements(texts: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in (t.encode() for t in texts))
