"""The reference's quantization operators against onnxruntime, one operator at a time
(one-node models built with onnx.helper, as in test_reference_onnxruntime.py), and the
cases the spec pins down exactly: round half to even, saturation, per-axis parameters."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import reference
from export.reference import UnsupportedError
from tests.cpu import SATURATION, u8s8_saturates
from tests.naive import naive_conv

OPSET = 21  # QuantizeLinear's output_dtype and the 16-bit types need 21
rng = np.random.default_rng(0)


def one_node(op_type: str, inputs: dict[str, np.ndarray | None], n_outputs: int = 1, constants=(),
             **attrs) -> onnx.ModelProto:
    """The one node `op_type`; inputs named in `constants` are initializers (onnxruntime
    wants some quantization parameters constant), None leaves an optional input out."""
    node = helper.make_node(op_type, [n if v is not None else "" for n, v in inputs.items()],
                            [f"y{i}" for i in range(n_outputs)], name=f"{op_type.lower()}0", **attrs)
    feeds = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for n, v in inputs.items() if v is not None and n not in constants]
    initializers = [numpy_helper.from_array(v, n) for n, v in inputs.items() if n in constants and v is not None]
    outputs = [onnx.ValueInfoProto(name=f"y{i}") for i in range(n_outputs)]  # typed by onnxruntime
    graph = helper.make_graph([node], "one_node", feeds, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def both(op_type: str, inputs: dict[str, np.ndarray | None], n_outputs: int = 1, constants=(), **attrs):
    """(reference outputs, onnxruntime outputs) of the one-node model, as lists."""
    inputs = {n: None if v is None else np.asarray(v) for n, v in inputs.items()}
    model = one_node(op_type, inputs, n_outputs, constants, **attrs)
    feeds = {n: v for n, v in inputs.items() if v is not None and n not in constants}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    actual = reference.run(model, feeds)
    return [actual[f"y{i}"] for i in range(n_outputs)], expected


def check(op_type: str, inputs, steps: int = 0, n_outputs: int = 1, constants=(), **attrs) -> list[np.ndarray]:
    """Same shape and dtype, and values equal (or, for a rescaling op, within `steps`)."""
    actual, expected = both(op_type, inputs, n_outputs, constants, **attrs)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert a.dtype == e.dtype
        if np.issubdtype(e.dtype, np.integer):
            assert np.abs(a.astype(np.int64) - e.astype(np.int64)).max(initial=0) <= steps
        else:
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=0)
    return actual


def scale(*shape) -> np.ndarray:
    return rng.uniform(0.01, 0.2, shape).astype(np.float32)


def quantized(dtype, *shape) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


# -- QuantizeLinear ---------------------------------------------------------------------

def test_quantize_rounds_half_to_even_and_saturates():
    x = np.float32([0.25, 0.75, 1.25, -0.25, -0.75, -1.25, 63.75, 64.25, 1e6, -1e6, np.inf, -np.inf])
    (y,) = check("QuantizeLinear", {"x": x, "y_scale": np.float32(0.5), "y_zero_point": np.int8(0)})
    assert y.tolist() == [0, 2, 2, 0, -2, -2, 127, 127, 127, -128, 127, -128]  # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    (y,) = check("QuantizeLinear", {"x": x, "y_scale": np.float32(0.5), "y_zero_point": np.uint8(128)})
    assert y.tolist() == [128, 130, 130, 128, 126, 126, 255, 255, 255, 0, 255, 0]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_quantize_per_tensor(dtype):
    info = np.iinfo(dtype)
    zero = np.array((int(info.min) + int(info.max)) // 3, dtype)
    check("QuantizeLinear", {"x": rng.standard_normal((2, 3, 5, 5)).astype(np.float32) * 10,
                             "y_scale": np.float32(0.07), "y_zero_point": zero})


@pytest.mark.parametrize("axis,shape", [(1, (2, 4, 3, 3)), (0, (6, 1, 5, 5)), (-1, (3, 7)), (0, (5,))])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_per_axis(axis, shape, dtype):
    channels = shape[axis]
    check("QuantizeLinear", {"x": rng.standard_normal(shape).astype(np.float32) * 4, "y_scale": scale(channels),
                             "y_zero_point": quantized(dtype, channels) // 2}, axis=axis)


def test_quantize_without_zero_point_is_uint8_and_output_dtype_picks_int8():
    x = rng.standard_normal((4, 6)).astype(np.float32)
    (y,) = check("QuantizeLinear", {"x": x, "y_scale": np.float32(0.01)})
    assert y.dtype == np.uint8 and y.min() == 0  # negatives saturate at the zero point 0
    (y,) = check("QuantizeLinear", {"x": x, "y_scale": np.float32(0.01)}, output_dtype=TensorProto.INT8)
    assert y.dtype == np.int8 and y.min() < 0


# -- DequantizeLinear -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_dequantize_per_tensor(dtype):
    (y,) = check("DequantizeLinear", {"x": quantized(dtype, 2, 3, 4, 4), "x_scale": np.float32(0.031),
                                      "x_zero_point": quantized(dtype, 1).reshape(())})
    assert y.dtype == np.float32


@pytest.mark.parametrize("axis,shape", [(1, (2, 4, 3, 3)), (0, (6, 1, 5, 5)), (-1, (3, 7))])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_dequantize_per_axis(axis, shape, dtype):
    channels = shape[axis]
    check("DequantizeLinear", {"x": quantized(dtype, *shape), "x_scale": scale(channels),
                               "x_zero_point": quantized(dtype, channels)}, axis=axis)


def test_dequantize_an_int32_bias_per_channel():
    check("DequantizeLinear", {"x": rng.integers(-2**20, 2**20, 16).astype(np.int32), "x_scale": scale(16),
                               "x_zero_point": np.zeros(16, np.int32)}, axis=0)


# -- QLinearConv ------------------------------------------------------------------------
# onnxruntime's x86 u8s8 kernels (and s8s8, which it runs as u8s8) add pairs of 8-bit
# products in 16 bits, saturating, unless the CPU has VNNI: with full-range weights they
# leave the spec (test_full_range_weights_saturate_onnxruntime_without_vnni). Int8 weights
# within [-64, 64] (reduce_range, as our int8 files have them) can never saturate, so the
# differential cases use those; u8u8 widens to 16 bits first and takes any weights.

def weights(dtype, *shape) -> np.ndarray:
    if dtype == np.int8:
        return rng.integers(-64, 64, shape, endpoint=True).astype(np.int8)  # 255 * 64 * 2 < 2**15
    return quantized(dtype, *shape)


QLINEAR_CONV = [
    # (x type, w type, C, M, group, kernel, strides, pads, per-channel weights, bias)
    (np.uint8, np.int8, 1, 6, 1, (5, 5), (1, 1), (2, 2, 2, 2), True, True),  # lenet5's conv1, as QDQ fuses it
    (np.uint8, np.int8, 6, 16, 1, (5, 5), (1, 1), (0, 0, 0, 0), True, True),
    (np.uint8, np.uint8, 4, 8, 1, (3, 3), (2, 2), (1, 1, 1, 1), False, True),
    (np.int8, np.int8, 4, 6, 2, (3, 3), (1, 1), (1, 0, 1, 0), True, False),  # grouped
    (np.uint8, np.int8, 4, 4, 4, (3, 3), (1, 2), (1, 1, 1, 1), True, True),  # depthwise
]


def qlinear_conv_inputs(x_type, w_type, c, m, group, kernel, per_channel, bias, w=None, y_scale=0.3):
    w_zero = np.zeros(m if per_channel else (), w_type) if w_type == np.int8 else np.array(131, w_type)
    return {
        "x": quantized(x_type, 2, c, 9, 9), "x_scale": np.float32(0.02), "x_zero_point": np.array(7, x_type),
        "w": weights(w_type, m, c // group, *kernel) if w is None else w,
        "w_scale": scale(m) if per_channel else np.float32(0.01),
        "w_zero_point": w_zero, "y_scale": np.float32(y_scale), "y_zero_point": np.array(3, x_type),
        "B": rng.integers(-5000, 5000, m).astype(np.int32) if bias else None,
    }


CONSTANT_WEIGHTS = ("w", "w_scale", "w_zero_point", "B")


@pytest.mark.parametrize("x_type,w_type,c,m,group,kernel,strides,pads,per_channel,bias", QLINEAR_CONV)
def test_qlinear_conv(x_type, w_type, c, m, group, kernel, strides, pads, per_channel, bias):
    inputs = qlinear_conv_inputs(x_type, w_type, c, m, group, kernel, per_channel, bias)
    # onnxruntime rescales in float32, the reference in float64: a near-tie may round apart
    check("QLinearConv", inputs, steps=1, constants=CONSTANT_WEIGHTS,
          group=group, kernel_shape=list(kernel), strides=list(strides), pads=list(pads))


def test_qlinear_conv_saturates_at_both_ends():
    inputs = qlinear_conv_inputs(np.uint8, np.int8, 6, 16, 1, (3, 3), True, True, y_scale=0.01)
    (y,) = check("QLinearConv", inputs, steps=1, constants=CONSTANT_WEIGHTS, pads=[1, 1, 1, 1])
    assert (y == 0).mean() > 0.2 and (y == 255).mean() > 0.2


def exact_qlinear_conv(inputs: dict, **attrs) -> np.ndarray:
    """The spec's formula with direct loops (tests/naive.py) on the dequantized values."""
    m = inputs["w"].shape[0]
    x = (inputs["x"].astype(np.float64) - inputs["x_zero_point"]) * inputs["x_scale"].astype(np.float64)
    w_scale = np.broadcast_to(inputs["w_scale"], (m,)).astype(np.float64).reshape(m, 1, 1, 1)
    w = (inputs["w"].astype(np.float64) - inputs["w_zero_point"].reshape(-1, 1, 1, 1)) * w_scale
    bias = inputs["B"].astype(np.float64) * inputs["x_scale"].astype(np.float64) * w_scale.ravel()
    y = naive_conv(x, w, bias, **attrs) / np.float64(inputs["y_scale"]) + int(inputs["y_zero_point"])
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


@pytest.mark.skipif(not u8s8_saturates(), reason=SATURATION)
def test_full_range_weights_saturate_onnxruntime_without_vnni():
    """Full-range int8 weights: the reference computes the spec's formula (equal to direct
    loops within 1 step), onnxruntime's AVX2 kernel differs by tens of steps."""
    w = quantized(np.int8, 6, 1, 5, 5)
    w[:, :, :, 0::2] = 127  # pairs of large products: 255 * 127 * 2 > 2**15 - 1
    inputs = qlinear_conv_inputs(np.uint8, np.int8, 1, 6, 1, (5, 5), True, True, w=w, y_scale=2.0)
    inputs["x"][:] = 255
    inputs["x"][..., ::3, ::2] = rng.integers(0, 255, inputs["x"][..., ::3, ::2].shape)
    attrs = dict(pads=[2, 2, 2, 2])
    (ours,), (theirs,) = both("QLinearConv", inputs, constants=CONSTANT_WEIGHTS, **attrs)
    steps = lambda a, b: int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())  # noqa: E731
    assert steps(ours, exact_qlinear_conv(inputs, **attrs)) <= 1
    assert steps(ours, theirs) > 10


# -- QLinearMatMul, MatMulInteger, ConvInteger ------------------------------------------

@pytest.mark.parametrize("a_type,b_type", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)])
def test_qlinear_matmul_per_tensor(a_type, b_type):
    b_zero = np.array(-2 if b_type == np.int8 else 9, b_type)
    inputs = {"a": quantized(a_type, 5, 24), "a_scale": np.float32(0.05), "a_zero_point": np.array(3, a_type),
              "b": weights(b_type, 24, 7), "b_scale": np.float32(0.02), "b_zero_point": b_zero,
              "y_scale": np.float32(0.9), "y_zero_point": np.array(1, a_type)}
    check("QLinearMatMul", inputs, steps=1)


def test_qlinear_matmul_per_column_b():
    inputs = {"a": quantized(np.uint8, 4, 16), "a_scale": np.float32(0.05), "a_zero_point": np.uint8(128),
              "b": weights(np.int8, 16, 5), "b_scale": scale(5), "b_zero_point": np.zeros(5, np.int8),
              "y_scale": np.float32(0.5), "y_zero_point": np.uint8(120)}
    check("QLinearMatMul", inputs, steps=1, constants=("b", "b_scale", "b_zero_point"))


@pytest.mark.parametrize("a_type,b_type", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)])
def test_matmul_integer(a_type, b_type):
    (y,) = check("MatMulInteger", {"A": quantized(a_type, 2, 3, 40), "B": weights(b_type, 40, 6),
                                   "a_zero_point": np.array(5, a_type), "b_zero_point": np.array(2, b_type)})
    assert y.dtype == np.int32


def test_matmul_integer_per_column_zero_point_and_none():
    check("MatMulInteger", {"A": quantized(np.uint8, 3, 8), "B": quantized(np.uint8, 8, 4),
                            "a_zero_point": None, "b_zero_point": quantized(np.uint8, 4)},
          constants=("b_zero_point",))


@pytest.mark.parametrize("pads,strides,group", [((1, 1, 1, 1), (1, 1), 1), ((0, 0, 0, 0), (2, 2), 1),
                                                ((2, 1, 0, 1), (1, 2), 2)])
def test_conv_integer(pads, strides, group):
    (y,) = check("ConvInteger", {"x": quantized(np.uint8, 2, 4, 8, 8), "w": quantized(np.uint8, 6, 4 // group, 3, 3),
                                 "x_zero_point": np.uint8(12), "w_zero_point": np.uint8(100)},
                 pads=list(pads), strides=list(strides), group=group)
    assert y.dtype == np.int32


# -- DynamicQuantizeLinear --------------------------------------------------------------

@pytest.mark.parametrize("x", [
    rng.standard_normal((3, 50)).astype(np.float32),
    rng.uniform(0.5, 4.0, (20,)).astype(np.float32),  # all positive: the range still holds 0
    -rng.uniform(0.5, 4.0, (20,)).astype(np.float32),
    np.zeros((2, 3), np.float32),  # the 0 / 0 case the spec leaves open
], ids=["mixed", "positive", "negative", "zeros"])
def test_dynamic_quantize_linear(x):
    y, y_scale, y_zero = check("DynamicQuantizeLinear", {"x": x}, n_outputs=3)
    assert y.dtype == np.uint8 and y_scale.shape == () and y_zero.dtype == np.uint8


# -- what the reference refuses, and says why -------------------------------------------

def run_one(op_type: str, inputs: dict, **attrs):
    node = helper.make_node(op_type, [n if v is not None else "" for n, v in inputs.items()], ["y"],
                            name="q", **attrs)
    return reference.run_node(node, [None if v is None else np.asarray(v) for v in inputs.values()])


@pytest.mark.parametrize("op_type,inputs,attrs,message", [
    ("QuantizeLinear", {"x": np.zeros((4, 8), np.float32), "y_scale": np.ones((4, 2), np.float32)},
     {"block_size": 4, "axis": 1}, "block_size 4 (blocked quantization) is not supported"),
    ("QuantizeLinear", {"x": np.zeros(3, np.float32), "y_scale": np.float32(1)},
     {"output_dtype": TensorProto.FLOAT8E4M3FN}, "output_dtype type"),
    ("QuantizeLinear", {"x": np.zeros(3, np.float16), "y_scale": np.float16(1)}, {}, "x type float16"),
    ("DequantizeLinear", {"x": np.zeros(3, np.uint8), "x_scale": np.float32(1)},
     {"output_dtype": TensorProto.FLOAT16}, "output_dtype FLOAT16 is not supported"),
    ("DequantizeLinear", {"x": np.zeros((2, 4), np.int8), "x_scale": np.ones((2, 2), np.float32)}, {},
     "blocked quantization"),
])
def test_unsupported_is_named(op_type, inputs, attrs, message):
    with pytest.raises(UnsupportedError, match=re.escape(message)):
        run_one(op_type, inputs, **attrs)


@pytest.mark.parametrize("op_type,inputs,attrs,message", [
    ("QuantizeLinear", {"x": np.zeros((2, 3, 4), np.float32), "y_scale": np.ones(4, np.float32)}, {},
     r"y_scale shape \(4,\) does not match input shape \(2, 3, 4\) along axis 1 \(expected \(3,\)\)"),
    ("QuantizeLinear", {"x": np.zeros((2, 3), np.float32), "y_scale": np.ones(3, np.float32),
                        "y_zero_point": np.zeros(2, np.uint8)}, {},
     r"y_zero_point shape \(2,\) differs from its scale's \(3,\)"),
    ("DequantizeLinear", {"x": np.zeros((2, 3), np.uint8), "x_scale": np.ones(3, np.float32)}, {"axis": 2},
     r"axis 2 is out of range \[-2, 1\] for input shape \(2, 3\)"),
    ("DequantizeLinear", {"x": np.zeros(3, np.int32), "x_scale": np.float32(1), "x_zero_point": np.int32(4)}, {},
     "an int32 x has zero point 0"),
    ("QLinearMatMul", {"a": np.zeros((2, 3), np.uint8), "a_scale": np.float32(1), "a_zero_point": np.uint8(0),
                       "b": np.zeros((4, 2), np.uint8), "b_scale": np.float32(1), "b_zero_point": np.uint8(0),
                       "y_scale": np.float32(1), "y_zero_point": np.uint8(0)}, {},
     r"a \(2, 3\) and b \(4, 2\) do not multiply"),
    ("QuantizeLinear", {"x": np.float32([1, np.nan]), "y_scale": np.float32(1)}, {}, "holds NaN"),
])
def test_bad_parameters_name_the_shapes(op_type, inputs, attrs, message):
    with pytest.raises(ValueError, match=message):
        run_one(op_type, inputs, **attrs)
