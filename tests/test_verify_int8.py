"""`python -m export verify` on int8 files made elsewhere, by onnxruntime's own quantization
tools on an onnx.helper CNN: the QOperator form (QLinearConv, an int8 MaxPool,
QLinearMatMul), dynamic quantization (DynamicQuantizeLinear, ConvInteger, MatMulInteger),
an onnxruntime-only operator (com.microsoft QGemm), and a u8s8 QDQ file whose fused
kernels saturate on CPUs without VNNI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

from export.__main__ import main
from export.int8 import quiet_quantizer
from export.verify import verify
from tests.cpu import SATURATION, u8s8_saturates

def helper_cnn(head: str = "MatMul", seed: int = 3) -> onnx.ModelProto:
    """(2, 1, 8, 8) -> Conv 3x3 pad 1 -> Relu -> MaxPool 2 -> Flatten -> MatMul or Gemm -> (2, 3)."""
    RNG = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((RNG.standard_normal((4, 1, 3, 3)) * 0.5).astype(np.float32), "w"),
             numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array((RNG.standard_normal((64, 3)) * 0.2).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node(head, ["f", "fc"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "helper-cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], producer_name="onnx.helper")


class Calibration:
    def __init__(self, seed: int = 4) -> None:
        rng = np.random.default_rng(seed)
        self.batches = iter([{"x": rng.standard_normal((2, 1, 8, 8)).astype(np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self.batches, None)


def quantized(tmp_path, name: str, head: str = "MatMul", seed: int = 3, **options):
    path = tmp_path / f"{name}.onnx"
    with quiet_quantizer():
        if options.pop("dynamic", False):
            quantize_dynamic(helper_cnn(head, seed), path, weight_type=QuantType.QUInt8,
                             op_types_to_quantize=["MatMul", "Conv"])
        else:
            quantize_static(helper_cnn(head, seed), path, Calibration(seed + 1), activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, **options)
    return path


def op_types(path) -> list[str]:
    return [f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in onnx.load(path).graph.node]


def test_a_qoperator_file_is_checked_node_by_node(tmp_path, capsys):
    path = quantized(tmp_path, "qop", quant_format=QuantFormat.QOperator, reduce_range=True)
    assert {"ai.onnx:QLinearConv", "ai.onnx:QLinearMatMul", "ai.onnx:MaxPool"} <= set(op_types(path))
    result = verify(path, strict=True)
    assert result.passed, result.failures
    assert {n.op_type: n.status for n in result.nodes}["QLinearConv"] == "ok"
    assert all(n.steps is not None for n in result.nodes if n.op_type in ("QLinearConv", "MaxPool", "QLinearMatMul"))
    assert result.fused and all(f.ok for f in result.fused)
    assert main(["verify", str(path), "--strict"]) == 0
    assert "quantized, within 1 step of the reference" in capsys.readouterr().out


def test_a_dynamically_quantized_file_is_checked_node_by_node(tmp_path):
    path = quantized(tmp_path, "dynamic", dynamic=True)
    assert {"ai.onnx:DynamicQuantizeLinear", "ai.onnx:ConvInteger", "ai.onnx:MatMulInteger"} <= set(op_types(path))
    result = verify(path, strict=True)
    assert result.passed, result.failures
    assert {n.op_type for n in result.nodes if n.status == "ok"} >= {"DynamicQuantizeLinear", "ConvInteger",
                                                                     "MatMulInteger"}


def test_onnxruntime_only_operators_are_unchecked_but_what_follows_them_is_checked(tmp_path):
    path = quantized(tmp_path, "qgemm", head="Gemm", quant_format=QuantFormat.QOperator, reduce_range=True)
    assert "com.microsoft:QGemm" in op_types(path)
    result = verify(path)
    assert result.passed, result.failures  # unchecked is reported, not a failure, without --strict
    statuses = {n.op_type: n.status for n in result.nodes}
    assert statuses["QGemm"] == "unchecked"
    assert statuses["DequantizeLinear"] == "ok"  # it reads QGemm's quantized output, taken from onnxruntime
    assert not verify(path, strict=True).passed


@pytest.mark.skipif(not u8s8_saturates(), reason=SATURATION)
def test_fused_kernels_that_saturate_fail_naming_the_tensor(tmp_path, capsys):
    """Full-range int8 weights (no reduce_range): the unoptimized graph is right, the fused
    QLinearConv of this CPU is not."""
    path = quantized(tmp_path, "u8s8", quant_format=QuantFormat.QDQ, reduce_range=False, per_channel=True)
    result = verify(path)
    assert all(n.status == "ok" for n in result.nodes)
    failed = [f for f in result.fused if f.ok is False]
    assert failed and failed[0].steps > 1, result.fused
    assert main(["verify", str(path)]) == 1
    assert "quantization steps (allowed 1)" in capsys.readouterr().out
    # the same model with weights within +-64, as --int8 makes them: every fused tensor within a step
    within = verify(quantized(tmp_path, "reduced", quant_format=QuantFormat.QDQ, reduce_range=True, per_channel=True))
    assert within.passed and all(f.ok for f in within.fused), within.failures
