"""ONNX MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool over strided window views."""

from __future__ import annotations

import numpy as np

from .windows import output_size, pad_spatial, resolve_pads, spatial_attrs, windows


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


def max_pool(
    X: np.ndarray, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, dilations=None,
    kernel_shape, pads=None, storage_order: int = 0, strides=None,
) -> np.ndarray:
    """Y = MaxPool(X): padding never wins the max (it is -inf)."""
    if storage_order != 0:
        raise ValueError("MaxPool: storage_order=1 (column-major Indices) is not supported")
    kernel_shape, strides, dilations, begins, ends, out_hw, overhang = _geometry(
        X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, "MaxPool")
    padded = pad_spatial(X, begins, [e + o for e, o in zip(ends, overhang)], -np.inf)
    return windows(padded, out_hw, kernel_shape, strides, dilations).max(axis=(4, 5))


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
    sums = windows(padded, out_hw, kernel_shape, strides, dilations).sum(axis=(4, 5))
    # The same windows over a 0/1 mask of the positions that count give the divisors.
    if count_include_pad:
        mask_hw = tuple(n + b + e for n, b, e in zip(X.shape[2:], begins, ends))
        mask = pad_spatial(np.ones((1, 1) + mask_hw, X.dtype), [0, 0], overhang, 0.0)
    else:
        mask = pad_spatial(np.ones((1, 1) + X.shape[2:], X.dtype), begins, full_ends, 0.0)
    counts = windows(mask, out_hw, kernel_shape, strides, dilations).sum(axis=(4, 5))
    return (sums / counts).astype(X.dtype, copy=False)


def global_average_pool(X: np.ndarray) -> np.ndarray:
    return X.mean(axis=tuple(range(2, X.ndim)), keepdims=True)


def global_max_pool(X: np.ndarray) -> np.ndarray:
    return X.max(axis=tuple(range(2, X.ndim)), keepdims=True)
