"""Models a user brings, as real files: a CNN written in a test and exported with
export.export_checked (tests may use torch; serve may not), the zoo's lenet5 from a user's
weights file, and graphs built with onnx.helper alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def export_classifier(module, out_path: Path, *, input_shape: tuple[int, int, int], labels: list[str],
                      mean, std, external_data: bool = False) -> Path:
    """`module` ((N, C, H, W) -> (N, classes)) through export.export_checked (the "Your own
    model, part 1" API: its checks, and labels and per-channel mean/std in the metadata);
    `external_data` then saves it again as model.onnx + model.onnx.data."""
    from export import export_checked

    result = export_checked(module, out_path, input_shape=input_shape, labels=labels, mean=mean, std=std)
    assert result.passed, result.failure
    if external_data:
        save(onnx.load(str(out_path)), out_path, external_data=True)
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
    copy of the shipped ones), exported under the user's name by `python -m export lenet5
    --weights ... --name ...`, which also writes <name>/test_data_set_0/ beside the file."""
    from zoo.weights import weights_dir

    runs = out_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(weights_dir() / f"lenet5-mnist{suffix}", runs / f"{name}{suffix}")
    subprocess.run([sys.executable, "-m", "export", "lenet5", "--weights", str(runs / f"{name}.safetensors"),
                    "--name", name, "--out", str(out_dir)], check=True, capture_output=True, timeout=600)
    return out_dir / f"{name}.onnx"


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


def slow_model(out_path: Path, *, layers: int = 48, channels: int = 64, size: int = 384) -> Path:
    """A model whose one run takes seconds: a (1, 1, 1, 1) input broadcast to (1, channels,
    size, size), then `layers` 3x3 convolutions. For shutdowns that must cut a run short."""
    rng = np.random.default_rng(0)
    weights = [helper.make_tensor("shape", TensorProto.INT64, [4], [1, channels, size, size])]
    nodes = [helper.make_node("Expand", ["x", "shape"], ["h0"])]
    for i in range(layers):
        w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.01
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [f"h{i}", f"w{i}"], [f"h{i + 1}"], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("ReduceMean", [f"h{layers}"], ["y"], axes=[2, 3], keepdims=0))
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels])], weights)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out_path)


def spec_cnn(out_path: Path, *, size: tuple[int, int] = (20, 18), classes: int = 5, seed: int = 0) -> Path:
    """A 3-channel CNN built with onnx.helper alone that uses what the ONNX spec allows and the
    zoo's models do not: a grouped convolution with strides 2 x 1, dilations 1 x 2 and
    asymmetric pads; an even kernel with auto_pad SAME_UPPER and 2 groups, without bias; a
    max pooling in ceil mode; average poolings with and without the padding counted; a
    global max pooling. Its nodes have no names (layers are named by their outputs)."""
    rng = np.random.default_rng(seed)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.5, name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], group=3, kernel_shape=[3, 3], strides=[2, 1],
                         dilations=[1, 2], pads=[1, 2, 0, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=2, kernel_shape=[2, 2], strides=[2, 2],
                         auto_pad="SAME_UPPER"),
        helper.make_node("Tanh", ["c2"], ["t2"]),
        helper.make_node("MaxPool", ["t2"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 0, 0, 0],
                         ceil_mode=1),
        helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                         count_include_pad=0),
        helper.make_node("AveragePool", ["p2"], ["p3"], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0],
                         count_include_pad=1),
        helper.make_node("GlobalMaxPool", ["p3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "spec_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, *size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [weight("w1", 6, 1, 3, 3), weight("b1", 6), weight("w2", 4, 3, 2, 2), weight("w3", classes, 4),
         weight("b3", classes)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return save(proto, out_path)
