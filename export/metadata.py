"""What travels inside each .onnx: everything a user of another runtime needs.

Every value is a string (ONNX metadata_props are string pairs); structured ones are JSON.
Files of the zoo's models (source shipped or trained) carry every key; a custom model's
file (source custom) carries those marked "all", and the others it has the facts for.
"""

from __future__ import annotations

import json

import onnx

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


def format_stat(values) -> str:
    """mean or std as metadata: one channel stays a plain number, several a JSON list."""
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    return repr(values[0]) if len(values) == 1 else json.dumps(values)


def parse_stat(text: str) -> list[float]:
    """The inverse of format_stat, always as a per-channel list."""
    value = json.loads(text)
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def build_metadata(card: dict, export_versions: dict[str, str], source: str = "shipped") -> dict[str, str]:
    """metadata_props for a model from its zoo model card (shipped, or trained by the user)."""
    spec = card["input"]
    return {
        "source": source,
        "model": card["model"],
        "dataset": card["dataset"],
        "labels": json.dumps(card["classes"]),
        "input_name": INPUT_NAME,
        "input_layout": spec["layout"],
        "input_shape": json.dumps([-1 if d is None else d for d in spec["shape"]]),
        "input_dtype": spec["dtype"],
        "pixel_scale": repr(spec["scale"]),
        "mean": format_stat(spec["mean"]),
        "std": format_stat(spec["std"]),
        "output_name": OUTPUT_NAME,
        "output_kind": "logits",
        "test_accuracy": repr(card["test_accuracy"]),
        "weights_sha256": card["weights_sha256"],
        "num_params": str(card["num_params"]),
        "recipe": json.dumps(card["recipe"], sort_keys=True),
        "versions": json.dumps({"train": card["versions"], "export": export_versions}, sort_keys=True),
    }


def build_custom_metadata(name: str, labels: list[str], input_shape: tuple[int, ...], mean: list[float],
                          std: list[float], pixel_scale: float, num_params: int,
                          export_versions: dict[str, str], weights_sha256: str | None = None) -> dict[str, str]:
    """metadata_props for a model the user wrote: what the export knows, nothing invented."""
    meta = {
        "source": "custom",
        "model": name,
        "labels": json.dumps(list(labels)),
        "input_name": INPUT_NAME,
        "input_layout": "NCHW",
        "input_shape": json.dumps([-1, *input_shape]),
        "input_dtype": "float32",
        "pixel_scale": repr(float(pixel_scale)),
        "mean": format_stat(mean),
        "std": format_stat(std),
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
