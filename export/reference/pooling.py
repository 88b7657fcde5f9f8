"""ONNX MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool.

A window reduction is computed separably, one whole-array step per kernel tap and axis,
each over the strided slice of the padded input that lines up with the output grid."""

from __future__ import annotations

import numpy as np

from .errors import UnsupportedError
from .windows import output_size, pad_spatial, resolve_pads, spatial_attrs, window_offsets


def _geometry(X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, op):
    kernel_shape, strides, dilations = spatial_attrs(X.shape, kernel_shape, strides, dilations, op)
    begins, ends = resolve_pads(X.shape[2:], kernel_shape, strides, dilations, pads, auto_pad)
    out_hw = tuple(
        output_size(n, k, s, d, b, e, bool(ceil_mode))
        for n, k, s, d, b, e in zip(X.shape[2:], kernel_shape, strides, dilations, begins, ends)
    )
    # ceil_mode can make the last window reach past the end padding: pad further, with a
    # value that never wins (max) or counts (average), so every window is in bounds.
    overhang = [
        max(0, (o - 1) * s + d * (k - 1) + 1 - (n + b + e))
        for o, s, d, k, n, b, e in zip(out_hw, strides, dilations, kernel_shape, X.shape[2:], begins, ends)
    ]
    return kernel_shape, strides, dilations, begins, ends, out_hw, overhang


def _reduce(padded: np.ndarray, out_hw, kernel_shape, strides, dilations, ufunc) -> np.ndarray:
    """ufunc (np.maximum or np.add) over every window of `padded`. Both are associative, so
    the rectangular window is reduced separably: along the width for each kx, then along
    the height for each ky -- kW + kH whole-array steps instead of kW * kH."""
    (oh, ow), (kh, kw) = out_hw, kernel_shape
    rows = _along(padded, 3, ow, kw, strides[1], dilations[1], ufunc)  # (N, C, Hp, OW)
    return _along(rows, 2, oh, kh, strides[0], dilations[0], ufunc)  # (N, C, OH, OW)


def _along(x: np.ndarray, axis: int, out_len: int, k: int, stride: int, dilation: int, ufunc) -> np.ndarray:
    acc = None
    for start, stop, step in window_offsets(out_len, k, stride, dilation):
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, stop, step)
        part = x[tuple(index)]
        acc = part.copy() if acc is None else ufunc(acc, part, out=acc)
    return acc


def max_pool(
    X: np.ndarray, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, dilations=None,
    kernel_shape, pads=None, storage_order: int = 0, strides=None,
) -> np.ndarray:
    """Y = MaxPool(X): padding never wins the max (it is -inf, or the type's least value for
    the int8 and uint8 inputs of int8 models)."""
    if storage_order != 0:
        raise UnsupportedError("MaxPool: storage_order=1 (column-major Indices) is not supported")
    kernel_shape, strides, dilations, begins, ends, out_hw, overhang = _geometry(
        X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, "MaxPool")
    least = np.iinfo(X.dtype).min if np.issubdtype(X.dtype, np.integer) else -np.inf
    padded = pad_spatial(X, begins, [e + o for e, o in zip(ends, overhang)], least)
    return _reduce(padded, out_hw, kernel_shape, strides, dilations, np.maximum)


def average_pool(
    X: np.ndarray, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, count_include_pad: int = 0,
    dilations=None, kernel_shape, pads=None, strides=None,
) -> np.ndarray:
    """Y = AveragePool(X). The divisor counts the input pixels in each window, plus the
    padded ones when count_include_pad is 1; never the ceil_mode overhang beyond the pads."""
    kernel_shape, strides, dilations, begins, ends, out_hw, overhang = _geometry(
        X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, "AveragePool")
    full_ends = [e + o for e, o in zip(ends, overhang)]
    padded = pad_spatial(X, begins, full_ends, 0.0)
    sums = _reduce(padded, out_hw, kernel_shape, strides, dilations, np.add)
    # The same windows over a 0/1 mask of the positions that count give the divisors.
    if count_include_pad:
        mask_hw = tuple(n + b + e for n, b, e in zip(X.shape[2:], begins, ends))
        mask = pad_spatial(np.ones((1, 1) + mask_hw, X.dtype), [0, 0], overhang, 0.0)
    else:
        mask = pad_spatial(np.ones((1, 1) + X.shape[2:], X.dtype), begins, full_ends, 0.0)
    counts = _reduce(mask, out_hw, kernel_shape, strides, dilations, np.add)
    return (sums / counts).astype(X.dtype, copy=False)


def global_average_pool(X: np.ndarray) -> np.ndarray:
    return X.mean(axis=tuple(range(2, X.ndim)), keepdims=True)


def global_max_pool(X: np.ndarray) -> np.ndarray:
    return X.max(axis=tuple(range(2, X.ndim)), keepdims=True)
