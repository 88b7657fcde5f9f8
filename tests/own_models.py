"""Models a user brings, as real files: a CNN written in a test and exported with torch
(tests may use torch; serve may not), and graphs built with onnx.helper alone.

`export_classifier` stands in for export.export_checked (the "Your own model, part 1"
API) until that lands: the call sites pass the same arguments, so switching is a one-line
change in this file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def export_classifier(module, out_path: Path, *, input_shape: tuple[int, int, int], labels: list[str],
                      mean, std, external_data: bool = False) -> Path:
    """`module` ((N, C, H, W) -> (N, classes)) as an ONNX file with a dynamic batch axis and
    the metadata export writes (labels, per-channel mean/std as JSON lists)."""
    import torch

    with torch.inference_mode():
        program = torch.onnx.export(
            module.eval(), (torch.zeros(2, *input_shape),), dynamo=True, verbose=False,
            input_names=["input"], output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},))
    proto = program.model_proto
    helper.set_model_props(proto, {
        "labels": json.dumps(labels), "mean": json.dumps(list(mean)), "std": json.dumps(list(std)),
        "pixel_scale": repr(1 / 255), "input_name": "input", "output_name": "logits",
        "input_shape": json.dumps([-1, *input_shape])})
    save(proto, out_path, external_data)
    return out_path


def save(proto: onnx.ModelProto, out_path: Path, external_data: bool = False) -> Path:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if external_data:  # as torch 2.13's exporter writes by default: model.onnx + model.onnx.data
        onnx.save_model(proto, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=out_path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(proto, str(out_path))
    return out_path


def user_lenet5(out_dir: Path, name: str) -> Path:
    """lenet5 from a user's weights file (python -m zoo train's .safetensors + card, here a
    copy of the shipped ones under the user's name), exported under that name."""
    from export.exporter import export_versions, to_onnx
    from export.metadata import build_metadata, set_metadata
    from zoo.weights import load_weights_file, weights_dir

    runs = out_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(weights_dir() / f"lenet5-mnist{suffix}", runs / f"{name}{suffix}")
    net, card = load_weights_file(runs / f"{name}.safetensors")
    proto = to_onnx(net)
    proto.model_version = 1
    set_metadata(proto, build_metadata(card, export_versions()))
    return save(proto, out_dir / f"{name}.onnx")


def linear_classifier(out_path: Path, *, batch: int | str, channels: int = 1, size: int = 8, classes: int = 4,
                      seed: int = 0, metadata: dict[str, str] | None = None) -> tuple[Path, np.ndarray]:
    """An image classifier built with onnx.helper alone: Flatten -> MatMul -> Add, batch axis
    fixed (an int) or symbolic (a name); returns the file and its weight matrix."""
    rng = np.random.default_rng(seed)
    features = channels * size * size
    weights = rng.standard_normal((features, classes)).astype(np.float32)
    bias = rng.standard_normal(classes).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["scores"]),
         helper.make_node("Add", ["scores", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, classes])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    if metadata:
        helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    return save(proto, out_path), weights


def two_input_model(out_path: Path) -> Path:
    """Not an image classifier: sum = a + b (FP32, (N, 3)) and count = n * 2 (INT64, (N,))."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]),
         helper.make_node("Mul", ["n", "two"], ["count"])],
        "two_inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("n", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("count", TensorProto.INT64, ["N"])],
        [numpy_helper.from_array(np.array(2, np.int64), "two")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return save(proto, out_path)
