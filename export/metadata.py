"""What travels inside each .onnx: everything a user of another runtime needs.

Every value is a string (ONNX metadata_props are string pairs); structured ones are JSON.
"""

from __future__ import annotations

import json

import onnx

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

# key -> what it holds; the README documents the same table.
KEYS = {
    "model": "zoo model name, e.g. lenet5",
    "dataset": "training dataset, mnist or fashion-mnist",
    "labels": "JSON list of the class names, index = logit position",
    "input_name": "graph input name",
    "input_layout": "NCHW",
    "input_shape": "JSON list; -1 marks the dynamic batch axis",
    "input_dtype": "float32",
    "pixel_scale": "multiply raw 0..255 pixels by this first (1/255)",
    "mean": "then subtract this ...",
    "std": "... and divide by this",
    "output_name": "graph output name",
    "output_kind": "logits (apply softmax for probabilities)",
    "test_accuracy": "top-1 accuracy of the source weights on the 10,000 test images",
    "weights_sha256": "SHA-256 of the source .safetensors weights",
    "num_params": "trainable parameters of the source model",
    "recipe": "JSON of the training recipe",
    "versions": "JSON of the library versions used to train and to export",
}


def build_metadata(card: dict, export_versions: dict[str, str]) -> dict[str, str]:
    """metadata_props for a model from its zoo model card."""
    spec = card["input"]
    return {
        "model": card["model"],
        "dataset": card["dataset"],
        "labels": json.dumps(card["classes"]),
        "input_name": INPUT_NAME,
        "input_layout": spec["layout"],
        "input_shape": json.dumps([-1 if d is None else d for d in spec["shape"]]),
        "input_dtype": spec["dtype"],
        "pixel_scale": repr(spec["scale"]),
        "mean": repr(spec["mean"]),
        "std": repr(spec["std"]),
        "output_name": OUTPUT_NAME,
        "output_kind": "logits",
        "test_accuracy": repr(card["test_accuracy"]),
        "weights_sha256": card["weights_sha256"],
        "num_params": str(card["num_params"]),
        "recipe": json.dumps(card["recipe"], sort_keys=True),
        "versions": json.dumps({"train": card["versions"], "export": export_versions}, sort_keys=True),
    }


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}
