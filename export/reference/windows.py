"""Padding arithmetic and strided window views shared by Conv and the pooling operators.

Everything follows the ONNX operator specification: `pads` is
[x1_begin, x2_begin, ..., x1_end, x2_end], and `auto_pad` SAME_UPPER / SAME_LOWER pick
pads so that output = ceil(input / stride), the odd pixel going at the end (UPPER) or the
beginning (LOWER).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def resolve_pads(
    spatial: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    pads: tuple[int, ...] | None,
    auto_pad: str,
) -> tuple[list[int], list[int]]:
    """(begin pads, end pads) per spatial axis."""
    rank = len(spatial)
    if auto_pad not in AUTO_PADS:
        raise ValueError(f"auto_pad {auto_pad!r} is not one of {', '.join(AUTO_PADS)}")
    if auto_pad == "NOTSET":
        pads = tuple(pads) if pads is not None else (0,) * (2 * rank)
        if len(pads) != 2 * rank:
            raise ValueError(f"pads {list(pads)} must have {2 * rank} values for {rank} spatial axes")
        if any(p < 0 for p in pads):
            raise ValueError(f"pads {list(pads)} must not be negative")
        return list(pads[:rank]), list(pads[rank:])
    if auto_pad == "VALID":
        return [0] * rank, [0] * rank
    begins, ends = [], []
    for n, k, s, d in zip(spatial, kernel_shape, strides, dilations):
        out = math.ceil(n / s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins, ends


def output_size(n: int, k: int, s: int, d: int, begin: int, end: int, ceil_mode: bool = False) -> int:
    """floor (or ceil) of (n + pads - d(k - 1) - 1) / s + 1, dropping a last window that
    would start in the end padding, as the spec says for ceil_mode."""
    span = n + begin + end - d * (k - 1) - 1
    if span < 0:
        raise ValueError(
            f"kernel {k} with dilation {d} spans {d * (k - 1) + 1} pixels, more than the "
            f"input's {n} plus padding {begin}+{end}"
        )
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + begin:
        out -= 1
    return out


def pad_spatial(x: np.ndarray, begins: list[int], ends: list[int], value: float) -> np.ndarray:
    width = [(0, 0), (0, 0)] + list(zip(begins, ends))
    if not any(begins) and not any(ends):
        return x
    return np.pad(x, width, mode="constant", constant_values=value)


def windows_nhwc(
    x: np.ndarray, out_shape: tuple[int, int], kernel_shape: tuple[int, int],
    strides: tuple[int, int], dilations: tuple[int, int],
) -> np.ndarray:
    """A read-only view (N, OH, OW, KH, KW, C) of the sliding windows of padded NHWC `x`.

    With channels last, the (KW, C) block of a window is one contiguous run of memory
    (for dilation 1), so copying the view into an im2col matrix moves whole runs."""
    n, _, _, c = x.shape
    sn, sh, sw, sc = x.strides
    (oh, ow), (kh, kw) = out_shape, kernel_shape
    return as_strided(
        x,
        shape=(n, oh, ow, kh, kw, c),
        strides=(sn, sh * strides[0], sw * strides[1], sh * dilations[0], sw * dilations[1], sc),
        writeable=False,
    )


def window_offsets(out_len: int, k: int, stride: int, dilation: int):
    """For each kernel tap along one axis, the (start, stop, step) slice of the padded
    input that lines up with the `out_len` outputs: a window reduction becomes k
    whole-array steps instead of a loop over pixels."""
    for tap in range(k):
        start = tap * dilation
        yield start, start + stride * (out_len - 1) + 1, stride


def spatial_attrs(
    x_shape: tuple[int, ...], kernel_shape, strides, dilations, op: str
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Validated (kernel_shape, strides, dilations) for a 4-D NCHW input."""
    if len(x_shape) != 4:
        raise ValueError(f"{op}: input shape {tuple(x_shape)} is not 4-D (N, C, H, W)")
    kernel_shape = tuple(int(k) for k in kernel_shape)
    strides = tuple(int(s) for s in (strides if strides is not None else (1, 1)))
    dilations = tuple(int(d) for d in (dilations if dilations is not None else (1, 1)))
    for name, value in (("kernel_shape", kernel_shape), ("strides", strides), ("dilations", dilations)):
        if len(value) != 2 or min(value) < 1:
            raise ValueError(f"{op}: {name} {list(value)} must be 2 positive integers for input {tuple(x_shape)}")
    return kernel_shape, strides, dilations
