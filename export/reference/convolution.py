"""ONNX Conv, vectorised as im2col + matmul (no Python loop over pixels).

A cache-sized chunk of images at a time is padded and turned into a column matrix, then
multiplied by the filters. With one input channel (a first layer) the columns are gathered
tap by tap straight into NCHW order; a depthwise convolution (one input channel per group)
needs no columns at all, only a multiply-add per kernel tap; otherwise the chunk is laid
out channels-last, so each im2col row is gathered from contiguous runs, and each group
multiplies its own slice of the channels.
"""

from __future__ import annotations

import numpy as np

from .windows import output_size, pad_spatial, resolve_pads, spatial_attrs, window_offsets, windows_nhwc

# Floats one chunk of images may touch (about 8 MiB): small enough to stay in cache from
# the padding through the im2col copy and the matmul to the output.
_CHUNK_FLOATS = 2 * 1024 * 1024


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
    oh, ow = (
        output_size(size, k, s, d, b, e)
        for size, k, s, d, b, e in zip((h, w), kernel_shape, strides, dilations, begins, ends)
    )
    kh, kw = kernel_shape
    out = np.empty((n, m, oh, ow), dtype=np.result_type(X, W))
    # Everything one chunk of images touches (padded input, columns, output) stays in cache.
    per_image = oh * ow * (kh * kw * c + 2 * m) + c * (h + sum(begins)) * (w + sum(ends))
    chunk = max(1, _CHUNK_FLOATS // max(1, per_image))
    one_channel = c == 1 and group == 1
    depthwise = c_per_group == 1 and group > 1
    for start in range(0, n, chunk):
        part = pad_spatial(X[start : start + chunk], begins, ends, 0.0)
        if one_channel:
            y = _conv_taps(part, W, (oh, ow), strides, dilations)
        elif depthwise:
            y = _conv_depthwise(part, W, (oh, ow), strides, dilations)
        else:
            y = _conv_nhwc(part, W, (oh, ow), strides, dilations, group)
        if B is not None:
            y += B.reshape(1, m, 1, 1)
        out[start : start + len(part)] = y
    return out


def _conv_taps(part: np.ndarray, W: np.ndarray, out_hw, strides, dilations) -> np.ndarray:
    """Columns (b, kH * kW, OH, OW) gathered one kernel tap at a time, then W @ columns."""
    b, (m, _, kh, kw), (oh, ow) = len(part), W.shape, out_hw
    cols = np.empty((b, kh * kw, oh, ow), dtype=part.dtype)
    rows = list(window_offsets(oh, kh, strides[0], dilations[0]))
    columns = list(window_offsets(ow, kw, strides[1], dilations[1]))
    for ky, r in enumerate(rows):
        for kx, q in enumerate(columns):
            cols[:, ky * kw + kx] = part[:, 0, slice(*r), slice(*q)]
    y = np.matmul(W.reshape(m, kh * kw), cols.reshape(b, kh * kw, oh * ow))  # (b, M, OH * OW)
    return y.reshape(b, m, oh, ow)


def _conv_depthwise(part: np.ndarray, W: np.ndarray, out_hw, strides, dilations) -> np.ndarray:
    """One input channel per group (depthwise, with M / C filters per channel): a
    multiply-add per kernel tap over the whole chunk, as im2col would only copy each pixel
    kH * kW times to multiply it by one number."""
    b, c = part.shape[:2]
    (m, _, kh, kw), (oh, ow) = W.shape, out_hw
    taps = W.reshape(c, m // c, kh, kw)  # filter f reads channel f // (M / C)
    y = np.zeros((b, c, m // c, oh, ow), dtype=np.result_type(part, W))
    rows = list(window_offsets(oh, kh, strides[0], dilations[0]))
    columns = list(window_offsets(ow, kw, strides[1], dilations[1]))
    for ky, r in enumerate(rows):
        for kx, q in enumerate(columns):
            y += part[:, :, None, slice(*r), slice(*q)] * taps[None, :, :, ky, kx, None, None]
    return y.reshape(b, m, oh, ow)


def _conv_nhwc(part: np.ndarray, W: np.ndarray, out_hw, strides, dilations, group: int) -> np.ndarray:
    """im2col over a channels-last copy of the chunk, then one matmul per group, each
    group reading its own slice of the channels."""
    b, (m, c_per_group, kh, kw), (oh, ow) = len(part), W.shape, out_hw
    mg, kernel_len = m // group, kh * kw * c_per_group
    # (G, kH * kW * C/G, M/G): the filters in the same (ky, kx, c) order as a column row.
    w_mat = W.reshape(group, mg, c_per_group, kh, kw).transpose(0, 3, 4, 2, 1).reshape(group, kernel_len, mg)
    nhwc = np.ascontiguousarray(part.transpose(0, 2, 3, 1))
    y = np.empty((b * oh * ow, m), dtype=np.result_type(part, W))
    for g in range(group):
        channels = nhwc[..., g * c_per_group : (g + 1) * c_per_group]
        view = windows_nhwc(channels, (oh, ow), (kh, kw), strides, dilations)
        y[:, g * mg : (g + 1) * mg] = view.reshape(b * oh * ow, kernel_len) @ w_mat[g]
    return y.reshape(b, oh * ow, m).transpose(0, 2, 1).reshape(b, m, oh, ow)
