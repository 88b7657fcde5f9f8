"""Direct-loop Conv and pooling, written for the tests only: slow, obvious, independent of
the vectorised reference. Each output pixel is computed from the ONNX definition."""

from __future__ import annotations

import math

import numpy as np


def same_pads(n, k, s, d, auto_pad):
    out = math.ceil(n / s)
    total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
    lo, hi = total // 2, total - total // 2
    return (lo, hi) if auto_pad == "SAME_UPPER" else (hi, lo)


def axis_pads(shape, kernel, strides, dilations, pads, auto_pad):
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return [same_pads(n, k, s, d, auto_pad) for n, k, s, d in zip(shape, kernel, strides, dilations)]
    if auto_pad == "VALID" or pads is None:
        return [(0, 0), (0, 0)]
    return [(pads[0], pads[2]), (pads[1], pads[3])]


def out_len(n, k, s, d, lo, hi, ceil_mode=False):
    span = n + lo + hi - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def naive_conv(x, w, b=None, *, kernel_shape=None, strides=(1, 1), dilations=(1, 1), pads=None,
               auto_pad="NOTSET", group=1):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    (pt, pb), (pl, pr) = axis_pads((h, wd), (kh, kw), strides, dilations, pads, auto_pad)
    oh = out_len(h, kh, strides[0], dilations[0], pt, pb)
    ow = out_len(wd, kw, strides[1], dilations[1], pl, pr)
    y = np.zeros((n, m, oh, ow), dtype=np.float64)
    mg = m // group
    for i in range(n):
        for f in range(m):
            g = f // mg
            for oy in range(oh):
                for ox in range(ow):
                    acc = 0.0 if b is None else float(b[f])
                    for ci in range(cg):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy = oy * strides[0] + ky * dilations[0] - pt
                                ix = ox * strides[1] + kx * dilations[1] - pl
                                if 0 <= iy < h and 0 <= ix < wd:
                                    acc += x[i, g * cg + ci, iy, ix] * w[f, ci, ky, kx]
                    y[i, f, oy, ox] = acc
    return y


def naive_pool(x, kind, *, kernel_shape, strides=(1, 1), dilations=(1, 1), pads=None,
               auto_pad="NOTSET", ceil_mode=0, count_include_pad=0):
    n, c, h, wd = x.shape
    kh, kw = kernel_shape
    (pt, pb), (pl, pr) = axis_pads((h, wd), kernel_shape, strides, dilations, pads, auto_pad)
    oh = out_len(h, kh, strides[0], dilations[0], pt, pb, bool(ceil_mode))
    ow = out_len(wd, kw, strides[1], dilations[1], pl, pr, bool(ceil_mode))
    y = np.zeros((n, c, oh, ow), dtype=np.float64)
    for i in range(n):
        for ch in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    vals, padded_count = [], 0
                    for ky in range(kh):
                        for kx in range(kw):
                            iy = oy * strides[0] + ky * dilations[0] - pt
                            ix = ox * strides[1] + kx * dilations[1] - pl
                            if 0 <= iy < h and 0 <= ix < wd:
                                vals.append(x[i, ch, iy, ix])
                            elif -pt <= iy < h + pb and -pl <= ix < wd + pr:
                                padded_count += 1  # inside the explicit padding
                    if kind == "max":
                        y[i, ch, oy, ox] = max(vals)
                    else:
                        count = len(vals) + (padded_count if count_include_pad else 0)
                        y[i, ch, oy, ox] = sum(vals) / count
    return y
