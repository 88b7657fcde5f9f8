"""The ONNX quantization operators, each as the spec defines it: QuantizeLinear and
DequantizeLinear (per tensor and per axis), the QOperator forms QLinearConv and
QLinearMatMul, the integer ConvInteger and MatMulInteger, and DynamicQuantizeLinear.

Quantized types are int8, uint8, int16 and uint16 (`QUANTIZED`: saturation ranges), scales
float32. Rounding is to the nearest integer, ties to even (np.rint), as the spec says.
The integer sums of the QOperator forms are computed exactly: 8-bit products summed in
float64 stay far below 2**53, so BLAS gives the exact integer, and the real-valued
result is then rescaled in float64 before the one rounding the spec asks for. Blocked
quantization, float8 and 4-bit types raise UnsupportedError.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from .convolution import conv
from .errors import UnsupportedError

# type -> (qmin, qmax): the saturation range of each quantized type the reference computes
QUANTIZED: dict[np.dtype, tuple[int, int]] = {
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint16): (0, 65535),
    np.dtype(np.int16): (-32768, 32767),
}
EIGHT_BIT = (np.dtype(np.uint8), np.dtype(np.int8))  # what QLinearConv, ConvInteger and friends take


def _quantized_type(op: str, what: str, dtype: np.dtype, allowed=tuple(QUANTIZED)) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in allowed:
        raise UnsupportedError(f"{op}: {what} type {dtype} is not supported "
                               f"(supported: {', '.join(str(t) for t in allowed)})")
    return dtype


def _float32(op: str, what: str, value: np.ndarray) -> np.ndarray:
    if value.dtype != np.float32:
        raise UnsupportedError(f"{op}: {what} type {value.dtype} is not supported (only float32)")
    return value


def _along_axis(op: str, name: str, param: np.ndarray, x_shape: tuple[int, ...], axis: int) -> np.ndarray:
    """A scale or zero point shaped to broadcast against x: a scalar (or one-element 1-D
    tensor, as onnxruntime reads it) for per-tensor, a 1-D tensor of x.shape[axis] for
    per-axis; a higher-rank one is blocked quantization."""
    if param.ndim == 0 or (param.ndim == 1 and param.size == 1):
        return param.reshape(())
    if param.ndim != 1:
        raise UnsupportedError(f"{op}: {name} shape {param.shape} (blocked quantization) is not supported; "
                               "only per-tensor (a scalar) and per-axis (1-D)")
    rank = len(x_shape)
    if not -rank <= axis < rank:
        raise ValueError(f"{op}: axis {axis} is out of range [-{rank}, {rank - 1}] for input shape {x_shape}")
    axis %= rank
    if param.shape[0] != x_shape[axis]:
        raise ValueError(f"{op}: {name} shape {param.shape} does not match input shape {x_shape} along "
                         f"axis {axis} (expected ({x_shape[axis]},))")
    return param.reshape([-1 if i == axis else 1 for i in range(rank)])


def _zero_point(op: str, name: str, zero_point: np.ndarray | None, scale: np.ndarray, dtype: np.dtype):
    if zero_point is None:
        return np.zeros(scale.shape, np.int64)
    if zero_point.shape != scale.shape:
        raise ValueError(f"{op}: {name} shape {zero_point.shape} differs from its scale's {scale.shape}; "
                         "the spec requires the same shape")
    if zero_point.dtype != dtype:
        raise ValueError(f"{op}: {name} type {zero_point.dtype} differs from the quantized type {dtype}")
    return zero_point.astype(np.int64)


def clamp_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rounded values (any float or integer array) clamped to dtype's range, as dtype."""
    low, high = QUANTIZED[np.dtype(dtype)]
    return np.clip(values, low, high).astype(dtype)


def _only_float32_per_axis(op: str, scale: np.ndarray, block_size: int, attribute: str, float_type: int) -> None:
    """What Q/DQ support here: float32 scales (and arithmetic, the `attribute` naming its
    type), per tensor or per axis, not blocked."""
    _float32(op, "scale", scale)
    if block_size:
        raise UnsupportedError(f"{op}: block_size {block_size} (blocked quantization) is not supported")
    if float_type not in (0, TensorProto.FLOAT):
        raise UnsupportedError(f"{op}: {attribute} {TensorProto.DataType.Name(float_type)} is not supported "
                               "(only float32)")


def quantize_linear(x, y_scale, y_zero_point=None, *, axis: int = 1, block_size: int = 0, output_dtype: int = 0,
                    saturate: int = 1, precision: int = 0):
    """y = saturate(round(x / y_scale) + y_zero_point), round half to even; the division in
    float32, the type of y_scale. `saturate` concerns float8 outputs only."""
    op = "QuantizeLinear"
    _float32(op, "x", x)
    _only_float32_per_axis(op, y_scale, block_size, "precision", precision)
    if y_zero_point is not None:
        dtype = _quantized_type(op, "y_zero_point", y_zero_point.dtype)
        if output_dtype and helper.tensor_dtype_to_np_dtype(output_dtype) != dtype:
            raise ValueError(f"{op}: output_dtype {TensorProto.DataType.Name(output_dtype)} differs from "
                             f"y_zero_point type {dtype}")
    else:
        dtype = _quantized_type(op, "output_dtype", helper.tensor_dtype_to_np_dtype(output_dtype)
                                if output_dtype else np.dtype(np.uint8))
    if np.isnan(x).any():
        raise ValueError(f"{op}: x (shape {x.shape}) holds NaN, which has no quantized value")
    scale = _along_axis(op, "y_scale", y_scale, x.shape, axis)
    zero = _zero_point(op, "y_zero_point", y_zero_point, y_scale, dtype).reshape(scale.shape)
    # in float32 throughout: the steps and zero points of 8- and 16-bit types are exact in
    # it, and a step count too large for that is clamped to the range anyway
    steps = np.rint(np.divide(x, scale, dtype=np.float32))
    steps += zero.astype(np.float32)
    return clamp_to(steps, dtype)


def dequantize_linear(x, x_scale, x_zero_point=None, *, axis: int = 1, block_size: int = 0, output_dtype: int = 0):
    """y = (x - x_zero_point) * x_scale, in float32 (the type of x_scale). An int32 x (a
    quantized bias) has no zero point: the spec says it is 0."""
    op = "DequantizeLinear"
    dtype = _quantized_type(op, "x", x.dtype, tuple(QUANTIZED) + (np.dtype(np.int32),))
    _only_float32_per_axis(op, x_scale, block_size, "output_dtype", output_dtype)
    scale = _along_axis(op, "x_scale", x_scale, x.shape, axis)
    zero = _zero_point(op, "x_zero_point", x_zero_point, x_scale, dtype).reshape(scale.shape)
    if dtype == np.int32 and np.any(zero):
        raise ValueError(f"{op}: an int32 x has zero point 0 by the spec; got {x_zero_point.tolist()}")
    # x - zero point is exact in float32 for 8- and 16-bit types; an int32 x (zero point 0)
    # rounds to float32 as onnxruntime's cast does
    y = x.astype(np.float32)
    if np.any(zero):
        y -= zero.astype(np.float32)
    y *= scale
    return y


def _scalar(op: str, name: str, value: np.ndarray) -> np.ndarray:
    if value.size != 1 or value.ndim > 1:
        raise ValueError(f"{op}: {name} shape {value.shape} is not a scalar (per-tensor quantization)")
    return value.reshape(())


def _per_channel(op: str, name: str, value: np.ndarray, channels: int, what: str) -> np.ndarray:
    """A scalar, or a 1-D tensor of `channels` values (per output channel, row or column)."""
    if value.size == 1 and value.ndim <= 1:
        return value.reshape(())
    if value.shape != (channels,):
        raise ValueError(f"{op}: {name} shape {value.shape} is neither a scalar nor ({channels},), one per {what}")
    return value


def _same_type(op: str, name: str, tensor: np.ndarray, zero_point: np.ndarray | None) -> None:
    if zero_point is not None and zero_point.dtype != tensor.dtype:
        raise ValueError(f"{op}: {name} type {zero_point.dtype} differs from its input's {tensor.dtype}")


def _requantize(real: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray, op: str) -> np.ndarray:
    """The quantized output of a real-valued (float64) result: round(real / y_scale) + zero
    point, saturated to the zero point's type."""
    dtype = _quantized_type(op, "y_zero_point", y_zero_point.dtype, EIGHT_BIT)
    scale = _scalar(op, "y_scale", _float32(op, "y_scale", y_scale)).astype(np.float64)
    zero = _scalar(op, "y_zero_point", y_zero_point).astype(np.int64)
    return clamp_to(np.rint(real / scale) + zero, dtype)


def _centred(op: str, name: str, q: np.ndarray, zero_point: np.ndarray | None, shape=()) -> np.ndarray:
    """q - zero point as exact float64 integers (the zero point reshaped to `shape`)."""
    _quantized_type(op, name, q.dtype, EIGHT_BIT)
    zero = 0 if zero_point is None else zero_point.astype(np.float64).reshape(shape)
    return q.astype(np.float64) - zero


def _integer_conv(op: str, x, w, x_zero_point, w_zero_point, attrs: dict) -> np.ndarray:
    """conv(x - x_zero_point, w - w_zero_point) exactly, in float64 (padding is the zero
    point, 0 after the subtraction)."""
    _same_type(op, "x_zero_point", x, x_zero_point)
    _same_type(op, "w_zero_point", w, w_zero_point)
    if w.ndim != 4:
        raise ValueError(f"{op}: weight shape {w.shape} is not 4-D (M, C/group, kH, kW)")
    x_zero = None if x_zero_point is None else _scalar(op, "x_zero_point", x_zero_point)
    w_zero = None if w_zero_point is None else _per_channel(op, "w_zero_point", w_zero_point, w.shape[0],
                                                            "output channel")
    w_shape = (-1, 1, 1, 1) if w_zero is not None and w_zero.ndim else ()
    return conv(_centred(op, "x", x, x_zero), _centred(op, "w", w, w_zero, w_shape), None, **attrs)


def _wrap_int32(values: np.ndarray) -> np.ndarray:
    """Exact integer sums as int32; the spec lets accumulation overflow only in 32 bits."""
    return values.astype(np.int64).astype(np.int32)


def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                 auto_pad: str = "NOTSET", dilations=None, group: int = 1, kernel_shape=None, pads=None,
                 strides=None):
    """y = saturate(round((conv(x - x_zp, w - w_zp) + B) * x_scale * w_scale / y_scale) + y_zp):
    the real convolution of the dequantized input and filter plus the bias (quantized with
    scale x_scale * w_scale and zero point 0), quantized with y_scale and y_zero_point.
    w_scale and w_zero_point are per tensor or per output channel."""
    op = "QLinearConv"
    attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads,
                 strides=strides)
    acc = _integer_conv(op, x, w, x_zero_point, w_zero_point, attrs)  # (N, M, OH, OW)
    m = w.shape[0]
    if B is not None:
        if B.dtype != np.int32 or B.shape != (m,):
            raise ValueError(f"{op}: bias B is {B.dtype} {B.shape}; expected int32 ({m},)")
        acc += B.astype(np.float64).reshape(1, m, 1, 1)
    xs = _scalar(op, "x_scale", _float32(op, "x_scale", x_scale)).astype(np.float64)
    ws = _per_channel(op, "w_scale", _float32(op, "w_scale", w_scale), m, "output channel").astype(np.float64)
    if w_zero_point is not None and w_zero_point.size != w_scale.size:
        raise ValueError(f"{op}: w_zero_point shape {w_zero_point.shape} differs from w_scale's {w_scale.shape}")
    real = acc * (xs * (ws.reshape(1, m, 1, 1) if ws.ndim else ws))
    return _requantize(real, y_scale, y_zero_point, op)


def conv_integer(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad: str = "NOTSET", dilations=None,
                 group: int = 1, kernel_shape=None, pads=None, strides=None):
    """y = conv(x - x_zero_point, w - w_zero_point) as int32; w_zero_point per tensor or per
    output channel."""
    attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads,
                 strides=strides)
    return _wrap_int32(_integer_conv("ConvInteger", x, w, x_zero_point, w_zero_point, attrs))


def _row_or_column(op: str, name: str, value: np.ndarray | None, matrix: np.ndarray, rows: bool):
    """None, a per-tensor scalar, or for a 2-D matrix one value per row (rows: (M,) or
    (M, 1)) or per column ((N,) or (1, N)), shaped to broadcast against the matrix."""
    if value is None or value.size == 1:
        return value if value is None else value.reshape(())
    if matrix.ndim != 2:
        raise UnsupportedError(f"{op}: {name} shape {value.shape} for an input of rank {matrix.ndim}: only "
                               "per-tensor, or per row / column of a 2-D input, is supported")
    count = matrix.shape[0] if rows else matrix.shape[1]
    shapes = ((count,), (count, 1)) if rows else ((count,), (1, count))
    if value.shape not in shapes:
        raise ValueError(f"{op}: {name} shape {value.shape} for input shape {matrix.shape}: expected a scalar or "
                         f"{' or '.join(map(str, shapes))}, one per {'row' if rows else 'column'}")
    return value.reshape((count, 1) if rows else (1, count))


def _matmul_operands(op: str, a, a_zero_point, b, b_zero_point) -> tuple[np.ndarray, np.ndarray]:
    """(a - a_zero_point, b - b_zero_point) as exact float64: the zero points per tensor,
    per row of a 2-D a or per column of a 2-D b."""
    if a.ndim < 1 or b.ndim < 1 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"{op}: a {a.shape} and b {b.shape} do not multiply (numpy.matmul rules)")
    operands = []
    for name, q, zero_point, rows in (("a", a, a_zero_point, True), ("b", b, b_zero_point, False)):
        _same_type(op, f"{name}_zero_point", q, zero_point)
        zero = _row_or_column(op, f"{name}_zero_point", zero_point, q, rows)
        operands.append(_centred(op, name, q, zero, () if zero is None else zero.shape))
    return operands[0], operands[1]


def matmul_integer(A, B, a_zero_point=None, b_zero_point=None):
    """Y = (A - a_zero_point) @ (B - b_zero_point) as int32 (numpy.matmul broadcasting)."""
    a, b = _matmul_operands("MatMulInteger", A, a_zero_point, B, b_zero_point)
    return _wrap_int32(np.matmul(a, b))


def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """y = saturate(round(((a - a_zp) * a_scale) @ ((b - b_zp) * b_scale) / y_scale) + y_zp):
    the real product of the dequantized inputs, quantized; a's scale per tensor or per row,
    b's per tensor or per column (2-D inputs)."""
    op = "QLinearMatMul"
    left, right = _matmul_operands(op, a, a_zero_point, b, b_zero_point)
    acc = np.matmul(left, right)
    a_s = _row_or_column(op, "a_scale", _float32(op, "a_scale", a_scale), a, rows=True).astype(np.float64)
    b_s = _row_or_column(op, "b_scale", _float32(op, "b_scale", b_scale), b, rows=False).astype(np.float64)
    real = acc * a_s * b_s
    return _requantize(real, y_scale, y_zero_point, op)


def dynamic_quantize_linear(x):
    """(y, y_scale, y_zero_point): uint8 quantization of x over its range widened to hold 0,
    y_scale = (max(0, max x) - min(0, min x)) / 255 and y_zero_point = round(saturate(0 -
    min / y_scale)). For an x of zeros the spec's formula divides 0 by 0; like onnxruntime
    we then take scale 1 (every value quantizes to the zero point 0)."""
    op = "DynamicQuantizeLinear"
    _float32(op, "x", x)
    if x.size == 0:
        raise ValueError(f"{op}: x is empty (shape {x.shape}); its range is undefined")
    if not np.isfinite(x).all():
        raise ValueError(f"{op}: x (shape {x.shape}) holds NaN or Inf; its range is undefined")
    low, high = QUANTIZED[np.dtype(np.uint8)]
    x_max = np.maximum(np.float32(0), x.max())
    x_min = np.minimum(np.float32(0), x.min())
    scale = np.float32(1) if x_max == x_min else np.float32((x_max - x_min) / np.float32(high - low))
    zero = np.rint(np.clip(np.float32(low) - x_min / scale, low, high))
    y = clamp_to(np.rint(np.divide(x, scale, dtype=np.float32)) + zero, np.dtype(np.uint8))
    return y, np.array(scale, np.float32), np.array(zero, np.uint8)


OPS = {
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
    "QLinearConv": qlinear_conv,
    "QLinearMatMul": qlinear_matmul,
    "ConvInteger": conv_integer,
    "MatMulInteger": matmul_integer,
    "DynamicQuantizeLinear": dynamic_quantize_linear,
}
