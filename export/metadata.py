"""What travels inside each .onnx: everything a user of another runtime needs.

Every value is a string (ONNX metadata_props are string pairs); structured ones are JSON.
Files of the zoo's models (source shipped or trained) carry every key; a custom model's
file (source custom) carries those marked "all", and the others it has the facts for.
"""

from __future__ import annotations

import json

import onnx

from zoo.datasets import DatasetInfo
from zoo.normalization import Normalization, format_channels

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

# key -> what it holds; the README documents the same table.
KEYS = {
    "source": "shipped (cnn-zoo's weights), trained (weights from python -m zoo train) or custom "
              "(any nn.Module, through export.export_checked or python -m export custom); all",
    "model": "zoo model name, e.g. lenet5; for a custom model the name it was exported under; all",
    "dataset": "training dataset, mnist or fashion-mnist",
    "labels": "JSON list of the class names, index = logit position; all",
    "input_name": "graph input name; all",
    "input_layout": "NCHW; all",
    "input_shape": "JSON list [-1, C, H, W]; -1 marks the dynamic batch axis; all",
    "input_dtype": "float32; all",
    "pixel_scale": "multiply raw 0..255 pixels by this first (1/255); all",
    "mean": "then subtract this: a number for one channel (0.1307), a JSON list of C numbers "
            "for several ([0.485, 0.456, 0.406]); all",
    "std": "... and divide by this, same form as mean; all",
    "output_name": "graph output name; all",
    "output_kind": "logits (apply softmax for probabilities); all",
    "test_accuracy": "top-1 accuracy of the source weights on the 10,000 test images",
    "weights_sha256": "SHA-256 of the source .safetensors weights",
    "num_params": "trainable parameters of the source model",
    "recipe": "JSON of the training recipe",
    "versions": "JSON of the library versions used to train and to export (custom: export only); all",
}


def build_metadata(card: dict, info: DatasetInfo, export_versions: dict[str, str],
                   source: str = "shipped") -> dict[str, str]:
    """metadata_props for a model from its zoo model card (shipped, or trained by the user)
    and its dataset's record (input shape, labels, normalization)."""
    norm = info.normalization
    return {
        "source": source,
        "model": card["model"],
        "dataset": card["dataset"],
        "labels": json.dumps(list(info.classes)),
        "input_name": INPUT_NAME,
        "input_layout": "NCHW",
        "input_shape": json.dumps([-1, *info.image_shape]),
        "input_dtype": "float32",
        "pixel_scale": repr(norm.pixel_scale),
        "mean": format_channels(norm.mean),
        "std": format_channels(norm.std),
        "output_name": OUTPUT_NAME,
        "output_kind": "logits",
        "test_accuracy": repr(card["test_accuracy"]),
        "weights_sha256": card["weights_sha256"],
        "num_params": str(card["num_params"]),
        "recipe": json.dumps(card["recipe"], sort_keys=True),
        "versions": json.dumps({"train": card["versions"], "export": export_versions}, sort_keys=True),
    }


def build_custom_metadata(name: str, labels: list[str], input_shape: tuple[int, ...], norm: Normalization,
                          num_params: int, export_versions: dict[str, str],
                          weights_sha256: str | None = None) -> dict[str, str]:
    """metadata_props for a model the user wrote: what the export knows, nothing invented."""
    meta = {
        "source": "custom",
        "model": name,
        "labels": json.dumps(list(labels)),
        "input_name": INPUT_NAME,
        "input_layout": "NCHW",
        "input_shape": json.dumps([-1, *input_shape]),
        "input_dtype": "float32",
        "pixel_scale": repr(float(norm.pixel_scale)),
        "mean": format_channels(norm.mean),
        "std": format_channels(norm.std),
        "output_name": OUTPUT_NAME,
        "output_kind": "logits",
        "num_params": str(num_params),
        "versions": json.dumps({"export": export_versions}, sort_keys=True),
    }
    if weights_sha256:
        meta["weights_sha256"] = weights_sha256
    return meta


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}
