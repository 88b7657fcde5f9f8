"""ONNX Conv, vectorised as im2col + matmul (no Python loop over pixels)."""

from __future__ import annotations

import numpy as np

from .windows import output_size, pad_spatial, resolve_pads, spatial_attrs, windows

# Images per im2col chunk: bounds the column matrix to about 64 MiB of float32.
_COLUMN_BUDGET = 16 * 1024 * 1024


def conv(
    X: np.ndarray,
    W: np.ndarray,
    B: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations=None,
    group: int = 1,
    kernel_shape=None,
    pads=None,
    strides=None,
) -> np.ndarray:
    """Y = Conv(X, W, B) for 2-D images: X (N, C, H, W), W (M, C / group, kH, kW), B (M,)."""
    if W.ndim != 4:
        raise ValueError(f"Conv: weight shape {W.shape} is not 4-D (M, C/group, kH, kW)")
    kernel_shape = tuple(kernel_shape) if kernel_shape is not None else W.shape[2:]
    kernel_shape, strides, dilations = spatial_attrs(X.shape, kernel_shape, strides, dilations, "Conv")
    n, c, h, w = X.shape
    m, c_per_group = W.shape[:2]
    if group < 1 or c % group or m % group or c // group != c_per_group:
        raise ValueError(
            f"Conv: input shape {X.shape} and weight shape {W.shape} do not fit group={group} "
            f"(need C = {c} divisible by group and W.shape[1] == C / group)"
        )
    if tuple(W.shape[2:]) != kernel_shape:
        raise ValueError(f"Conv: kernel_shape {list(kernel_shape)} disagrees with weight shape {W.shape}")
    if B is not None and B.shape != (m,):
        raise ValueError(f"Conv: bias shape {B.shape} is not ({m},) for weight shape {W.shape}")
    begins, ends = resolve_pads((h, w), kernel_shape, strides, dilations, pads, auto_pad)
    out_hw = tuple(
        output_size(size, k, s, d, b, e)
        for size, k, s, d, b, e in zip((h, w), kernel_shape, strides, dilations, begins, ends)
    )
    padded = pad_spatial(X, begins, ends, 0.0)
    kh, kw = kernel_shape
    kernel_len = c_per_group * kh * kw
    # (G, M/G, C/G * kH * kW): one weight matrix per group.
    w_mat = W.reshape(group, m // group, kernel_len)
    chunk = max(1, _COLUMN_BUDGET // max(1, out_hw[0] * out_hw[1] * c * kh * kw))
    out = np.empty((n, m) + out_hw, dtype=np.result_type(X, W))
    for start in range(0, n, chunk):
        view = windows(padded[start : start + chunk], out_hw, kernel_shape, strides, dilations)
        b = view.shape[0]
        # (b, C, OH, OW, kH, kW) -> (G, b * OH * OW, C/G * kH * kW)
        cols = view.reshape(b, group, c_per_group, *out_hw, kh, kw)
        cols = cols.transpose(1, 0, 3, 4, 2, 5, 6).reshape(group, -1, kernel_len)
        y = np.matmul(cols, w_mat.transpose(0, 2, 1))  # (G, b * OH * OW, M/G)
        y = y.reshape(group, b, *out_hw, m // group).transpose(1, 0, 4, 2, 3)
        out[start : start + b] = y.reshape(b, m, *out_hw)
    if B is not None:
        out += B.reshape(1, m, 1, 1)
    return out
