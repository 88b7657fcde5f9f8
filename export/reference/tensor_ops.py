"""The non-spatial ONNX operators our exported models use, each as the spec defines it."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from .errors import UnsupportedError


def identity(input):
    return input


def _broadcast_shape(op: str, A, B) -> tuple[int, ...]:
    """The output shape of a multidirectional (NumPy-style) broadcast of A and B; the spec
    requires both inputs to have the same type."""
    if A.dtype != B.dtype:
        raise ValueError(f"{op}: A dtype {A.dtype} (shape {A.shape}) and B dtype {B.dtype} "
                         f"(shape {B.shape}) differ; the spec requires one type")
    try:
        return np.broadcast_shapes(A.shape, B.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes A {A.shape} and B {B.shape} do not broadcast "
                         "(each axis, aligned from the right, must be equal or 1)") from None


def add(A, B):
    _broadcast_shape("Add", A, B)
    return np.asarray(A + B)


def sub(A, B):
    _broadcast_shape("Sub", A, B)
    return np.asarray(A - B)


def mul(A, B):
    _broadcast_shape("Mul", A, B)
    return np.asarray(A * B)


def div(A, B):
    """Integer Div truncates toward zero (as C does), float Div is true division."""
    _broadcast_shape("Div", A, B)
    if np.issubdtype(A.dtype, np.integer):
        if not np.all(B):
            raise ValueError(f"Div: integer division by zero (A {A.shape}, B {B.shape})")
        quotient = np.abs(A) // np.abs(B)
        return np.where((A < 0) ^ (B < 0), -quotient, quotient).astype(A.dtype, copy=False)
    return np.asarray(A / B, dtype=A.dtype)


def matmul(A, B):
    return np.matmul(A, B)


def gemm(A, B, C=None, *, alpha: float = 1.0, beta: float = 1.0, transA: int = 0, transB: int = 0):
    """Y = alpha * A' B' + beta * C, with A' = A.T if transA and B' = B.T if transB."""
    a = A.T if transA else A
    b = B.T if transB else B
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"Gemm: A {A.shape} (transA={transA}) and B {B.shape} (transB={transB}) "
            "do not multiply"
        )
    y = np.float32(alpha) * (a @ b) if alpha != 1.0 else a @ b
    if C is not None:
        y = y + (np.float32(beta) * C if beta != 1.0 else C)
    return y.astype(A.dtype, copy=False)


def flatten(input, *, axis: int = 1):
    axis = axis + input.ndim if axis < 0 else axis
    outer = int(np.prod(input.shape[:axis], dtype=np.int64))
    inner = int(np.prod(input.shape[axis:], dtype=np.int64))
    return input.reshape(outer, inner)


def reshape(data, shape, *, allowzero: int = 0):
    target = [int(s) for s in shape]
    if not allowzero:
        target = [data.shape[i] if s == 0 else s for i, s in enumerate(target)]
    try:
        return data.reshape(target)
    except ValueError:
        raise ValueError(f"Reshape: cannot reshape {data.shape} to {target}") from None


def _check_axis(op: str, axis: int, shape: tuple[int, ...]) -> int:
    """`axis` in [-r, r - 1] for a rank-r input, as a non-negative index."""
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"{op}: axis {axis} is out of range [-{len(shape)}, {len(shape) - 1}] "
                         f"for input shape {shape}")
    return axis % len(shape)


def softmax(input, *, axis: int = -1):
    """Softmax-13: exp(x) / sum(exp(x)) along `axis` (shifted by the max, which cancels)."""
    axis = _check_axis("Softmax", axis, input.shape)
    shifted = input - input.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(input, *, axis: int = -1):
    """LogSoftmax-13: x - log(sum(exp(x))) along `axis`, computed as
    (x - max) - log(sum(exp(x - max))) so that no exp overflows."""
    axis = _check_axis("LogSoftmax", axis, input.shape)
    shifted = input - input.max(axis=axis, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(input.dtype, copy=False)


def batch_normalization(X, scale, B, input_mean, input_var, *, epsilon: float = 1e-5,
                        momentum: float = 0.9, training_mode: int = 0):
    """Inference mode: Y = (X - mean) / sqrt(var + epsilon) * scale + B, channels on axis 1."""
    if training_mode:
        raise UnsupportedError("BatchNormalization: training_mode=1 is not supported (inference only)")
    shape = (1, -1) + (1,) * (X.ndim - 2)
    inv = (scale / np.sqrt(input_var + np.float32(epsilon))).reshape(shape)
    return ((X - input_mean.reshape(shape)) * inv + B.reshape(shape)).astype(X.dtype, copy=False)


def dropout(data, ratio=None, training_mode=None, *, seed: int = 0):
    """Inference: the identity (and an all-true mask, when asked for)."""
    if training_mode is not None and bool(training_mode):
        raise UnsupportedError("Dropout: training_mode=True is not supported (inference only)")
    return data, np.ones(data.shape, dtype=bool)


def constant(*, value=None, value_float=None, value_floats=None, value_int=None, value_ints=None,
             sparse_value=None, value_string=None, value_strings=None):
    if value is not None:
        return numpy_helper.to_array(value)
    if value_float is not None:
        return np.array(value_float, dtype=np.float32)
    if value_floats is not None:
        return np.array(value_floats, dtype=np.float32)
    if value_int is not None:
        return np.array(value_int, dtype=np.int64)
    if value_ints is not None:
        return np.array(value_ints, dtype=np.int64)
    raise UnsupportedError("Constant: only value, value_float(s) and value_int(s) are supported")


def pad(data, pads, constant_value=None, axes=None, *, mode: str = "constant"):
    rank = data.ndim
    axes = [int(a) % rank for a in axes] if axes is not None else list(range(rank))
    pads = [int(p) for p in pads]
    if len(pads) != 2 * len(axes):
        raise ValueError(f"Pad: pads {pads} must have {2 * len(axes)} values for axes {axes}")
    if any(p < 0 for p in pads):
        raise UnsupportedError(f"Pad: negative pads {pads} (cropping) are not supported")
    width = [(0, 0)] * rank
    for i, a in enumerate(axes):
        width[a] = (pads[i], pads[i + len(axes)])
    if mode == "constant":
        value = constant_value.item() if constant_value is not None and constant_value.size else 0
        return np.pad(data, width, mode="constant", constant_values=value)
    if mode in ("reflect", "edge"):
        return np.pad(data, width, mode=mode)
    raise UnsupportedError(f"Pad: mode {mode!r} is not supported (supported: constant, reflect, edge)")


def shape(data, *, start: int = 0, end=None):
    return np.array(data.shape[start:end], dtype=np.int64)


def gather(data, indices, *, axis: int = 0):
    return np.take(data, indices, axis=axis)


def unsqueeze(data, axes):
    out = data
    rank = data.ndim + len(axes)
    for a in sorted(int(a) % rank for a in axes):
        out = np.expand_dims(out, a)
    return out


def squeeze(data, axes=None):
    return np.squeeze(data, axis=None if axes is None else tuple(int(a) for a in axes))


def concat(*inputs, axis: int):
    """Concat-13: every input has the same rank, type, and shape except along `axis`
    (which may be negative, counting from the end)."""
    if not inputs:
        raise ValueError("Concat: needs at least one input")
    first = inputs[0]
    axis = _check_axis("Concat", axis, first.shape)
    shapes = [x.shape for x in inputs]
    if any(len(s) != len(first.shape) or s[:axis] + s[axis + 1:] != first.shape[:axis] + first.shape[axis + 1:]
           for s in shapes):
        raise ValueError(f"Concat: input shapes {shapes} differ outside axis {axis}")
    if any(x.dtype != first.dtype for x in inputs):
        raise ValueError(f"Concat: input dtypes {[str(x.dtype) for x in inputs]} differ (shapes {shapes})")
    return np.concatenate(inputs, axis=axis)


def cast(input, *, to: int, saturate: int = 1, round_mode: str = "up"):
    return input.astype(helper.tensor_dtype_to_np_dtype(to))


def cast_like(input, target_type, *, saturate: int = 1, round_mode: str = "up"):
    """CastLike-19: input cast to target_type's element type (saturate and round_mode only
    concern float8 and float4 targets)."""
    return input.astype(target_type.dtype)


def expand(input, shape):
    """Expand-13: broadcast input to `shape` multidirectionally (a 1 in `shape` keeps the
    input's size, so the output can be larger than `shape`)."""
    target = tuple(int(d) for d in shape)
    try:
        out_shape = np.broadcast_shapes(input.shape, target)
    except ValueError:
        raise ValueError(f"Expand: input shape {input.shape} does not broadcast to shape {target}") from None
    return np.broadcast_to(input, out_shape).copy()


def transpose(data, *, perm=None):
    return np.transpose(data, perm)


def reduce_mean(data, axes=None, *, keepdims: int = 1, noop_with_empty_axes: int = 0):
    if axes is None or len(axes) == 0:
        if noop_with_empty_axes:
            return data
        axes = range(data.ndim)
    return data.mean(axis=tuple(int(a) for a in axes), keepdims=bool(keepdims)).astype(data.dtype, copy=False)

