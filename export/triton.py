"""A Triton / KServe model repository for the exported models.

    <repo>/<name>/config.pbtxt
    <repo>/<name>/labels.txt
    <repo>/<name>/1/model.onnx
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from serve.core.limits import Limits
from zoo.atomic import atomic_write_bytes, atomic_write_text

from .metadata import INPUT_NAME, OUTPUT_NAME, read_metadata

# Our server's own batching defaults, so a repository batches the same here and in Triton:
# the largest batch one run is given, and how long a batch waits for company.
MAX_BATCH_SIZE = Limits().max_batch
PREFERRED_BATCH_SIZES = (MAX_BATCH_SIZE,)
MAX_QUEUE_DELAY_US = round(Limits().batch_delay_s * 1e6)


def config_pbtxt(name: str, num_classes: int, input_dims: tuple[int, ...], kind: str = "KIND_CPU",
                 count: int = 1) -> str:
    """Text-format ModelConfig: variable batch (max_batch_size > 0 means dims exclude it);
    `input_dims` (C, H, W) are the model's own, from its metadata."""
    dims = ", ".join(map(str, input_dims))
    preferred = ", ".join(map(str, PREFERRED_BATCH_SIZES))
    return f"""name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {MAX_BATCH_SIZE}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {num_classes} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}
}}
instance_group [
  {{
    kind: {kind}
    count: {count}
  }}
]
version_policy: {{ latest: {{ num_versions: 1 }} }}
"""


def write_model_repository(repo: Path, name: str, proto: onnx.ModelProto, device: str = "cpu") -> Path:
    meta = read_metadata(proto)
    labels = json.loads(meta["labels"])
    input_dims = tuple(json.loads(meta["input_shape"])[1:])  # without the batch axis
    kind = "KIND_GPU" if device == "gpu" else "KIND_CPU"
    model_dir = repo / name
    atomic_write_bytes(model_dir / "1" / "model.onnx", proto.SerializeToString())
    atomic_write_text(model_dir / "labels.txt", "\n".join(labels) + "\n")
    atomic_write_text(model_dir / "config.pbtxt", config_pbtxt(name, len(labels), input_dims, kind))
    return model_dir
