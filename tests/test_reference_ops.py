"""The vectorised NumPy reference against direct loops and against PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from export.reference import average_pool, conv, global_average_pool, global_max_pool, max_pool
from export.reference.tensor_ops import batch_normalization, flatten, gemm, pad, reshape, softmax
from tests.naive import naive_conv, naive_pool

RTOL, ATOL = 1e-5, 1e-5
rng = np.random.default_rng(0)


def check(actual: np.ndarray, expected: np.ndarray, rtol=RTOL, atol=ATOL) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


CONV_GRID = [
    # (C, M, group, H, W, kernel, strides, dilations, pads, auto_pad)
    (2, 3, 1, 7, 7, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), "NOTSET"),
    (2, 3, 1, 7, 6, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), "NOTSET"),
    (2, 4, 1, 8, 7, (3, 2), (1, 2), (1, 1), (2, 0, 1, 3), "NOTSET"),  # asymmetric pads
    (1, 2, 1, 9, 9, (2, 2), (1, 1), (1, 1), None, "SAME_UPPER"),  # even kernel, SAME
    (1, 2, 1, 9, 9, (2, 2), (1, 1), (1, 1), None, "SAME_LOWER"),
    (2, 2, 1, 10, 9, (4, 3), (3, 2), (1, 1), None, "SAME_UPPER"),
    (2, 2, 1, 10, 9, (4, 3), (3, 2), (1, 1), None, "SAME_LOWER"),
    (2, 3, 1, 11, 11, (3, 3), (2, 2), (2, 2), (1, 1, 1, 1), "NOTSET"),  # dilation with stride
    (2, 3, 1, 12, 11, (3, 3), (2, 1), (2, 3), None, "SAME_UPPER"),
    (2, 3, 1, 9, 9, (3, 3), (2, 2), (1, 1), None, "VALID"),
    (4, 6, 2, 7, 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "NOTSET"),  # grouped
    (4, 4, 4, 7, 8, (3, 3), (2, 2), (1, 1), (1, 0, 1, 0), "NOTSET"),  # depthwise
    (3, 6, 3, 6, 6, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), "NOTSET"),  # depthwise multiplier 2
    # one input channel takes the tap-by-tap path: the same grid of attributes again
    (1, 3, 1, 11, 10, (3, 3), (2, 2), (2, 2), (1, 1, 1, 1), "NOTSET"),
    (1, 4, 1, 8, 7, (3, 2), (1, 2), (1, 1), (2, 0, 1, 3), "NOTSET"),
    (1, 2, 1, 10, 9, (4, 3), (3, 2), (1, 1), None, "SAME_LOWER"),
    (1, 2, 1, 9, 9, (3, 3), (2, 2), (1, 1), None, "VALID"),
    (6, 8, 1, 9, 9, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "NOTSET"),  # many channels, channels-last path
]


@pytest.mark.parametrize("c,m,group,h,w,kernel,strides,dilations,pads,auto_pad", CONV_GRID)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_matches_direct_loop(c, m, group, h, w, kernel, strides, dilations, pads, auto_pad, bias):
    x = rng.standard_normal((2, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((m, c // group, *kernel), dtype=np.float32)
    b = rng.standard_normal(m, dtype=np.float32) if bias else None
    attrs = dict(kernel_shape=kernel, strides=strides, dilations=dilations, pads=pads,
                 auto_pad=auto_pad, group=group)
    check(conv(x, wt, b, **attrs), naive_conv(x, wt, b, **attrs).astype(np.float32))


@pytest.mark.parametrize("c,m,group,h,w,kernel,strides,dilations,pads,auto_pad",
                         [g for g in CONV_GRID if g[-1] == "NOTSET" and g[8][:2] == g[8][2:]])
def test_conv_matches_torch(c, m, group, h, w, kernel, strides, dilations, pads, auto_pad):
    x = rng.standard_normal((3, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((m, c // group, *kernel), dtype=np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b),
                        stride=strides, padding=pads[:2], dilation=dilations, groups=group)
    check(conv(x, wt, b, strides=strides, pads=pads, dilations=dilations, group=group), expected.numpy())


def test_conv_same_matches_torch_same_for_odd_kernel():
    x = rng.standard_normal((2, 3, 9, 8), dtype=np.float32)
    wt = rng.standard_normal((4, 3, 3, 5), dtype=np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), padding="same").numpy()
    check(conv(x, wt, auto_pad="SAME_UPPER"), expected)
    check(conv(x, wt, auto_pad="SAME_LOWER"), expected)


@pytest.mark.parametrize("channels", [1, 2])
def test_conv_chunks_large_batches_consistently(channels, monkeypatch):
    import export.reference.convolution as cm

    x = rng.standard_normal((300, channels, 28, 28), dtype=np.float32)
    wt = rng.standard_normal((8, channels, 5, 5), dtype=np.float32)
    whole = conv(x, wt, pads=(2, 2, 2, 2))
    monkeypatch.setattr(cm, "_CHUNK_FLOATS", 50_000)  # force many chunks
    check(conv(x, wt, pads=(2, 2, 2, 2)), whole)  # only the summation order may differ


POOL_GRID = [
    # (H, W, kernel, strides, dilations, pads, auto_pad, ceil_mode)
    (8, 8, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), "NOTSET", 0),
    (7, 7, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), "NOTSET", 1),  # ceil adds a partial window
    (7, 9, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), "NOTSET", 1),
    (6, 6, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), "NOTSET", 1),  # last window would start in padding
    (5, 5, (2, 2), (2, 2), (1, 1), (1, 1, 1, 1), "NOTSET", 1),
    (9, 8, (3, 2), (2, 3), (1, 1), (1, 0, 0, 1), "NOTSET", 0),  # asymmetric pads
    (9, 8, (3, 2), (2, 3), (1, 1), (1, 0, 0, 1), "NOTSET", 1),
    (10, 10, (3, 3), (2, 2), (2, 2), (1, 1, 1, 1), "NOTSET", 0),  # dilation with stride
    (10, 11, (3, 3), (2, 2), (2, 2), (2, 2, 2, 2), "NOTSET", 1),
    (9, 9, (2, 2), (1, 1), (1, 1), None, "SAME_UPPER", 0),  # even kernel SAME
    (9, 9, (2, 2), (1, 1), (1, 1), None, "SAME_LOWER", 0),
    (9, 10, (3, 3), (2, 2), (1, 1), None, "SAME_UPPER", 0),
    (9, 10, (4, 3), (3, 2), (1, 1), None, "SAME_LOWER", 0),
    (9, 9, (3, 3), (2, 2), (1, 1), None, "VALID", 0),
]


@pytest.mark.parametrize("h,w,kernel,strides,dilations,pads,auto_pad,ceil_mode", POOL_GRID)
def test_max_pool_matches_direct_loop(h, w, kernel, strides, dilations, pads, auto_pad, ceil_mode):
    x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
    attrs = dict(kernel_shape=kernel, strides=strides, dilations=dilations, pads=pads,
                 auto_pad=auto_pad, ceil_mode=ceil_mode)
    check(max_pool(x, **attrs), naive_pool(x, "max", **attrs).astype(np.float32))


@pytest.mark.parametrize("h,w,kernel,strides,dilations,pads,auto_pad,ceil_mode", POOL_GRID)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_matches_direct_loop(h, w, kernel, strides, dilations, pads, auto_pad, ceil_mode,
                                          count_include_pad):
    x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
    attrs = dict(kernel_shape=kernel, strides=strides, dilations=dilations, pads=pads,
                 auto_pad=auto_pad, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    check(average_pool(x, **attrs), naive_pool(x, "avg", **attrs).astype(np.float32))


TORCH_POOLS = [g for g in POOL_GRID if g[6] == "NOTSET" and g[5][:2] == g[5][2:]
               and max(g[5]) <= min(g[2]) // 2]


@pytest.mark.parametrize("h,w,kernel,strides,dilations,pads,auto_pad,ceil_mode", TORCH_POOLS)
def test_max_pool_matches_torch(h, w, kernel, strides, dilations, pads, auto_pad, ceil_mode):
    x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
    expected = F.max_pool2d(torch.from_numpy(x), kernel, strides, pads[:2], dilations, bool(ceil_mode))
    check(max_pool(x, kernel_shape=kernel, strides=strides, dilations=dilations, pads=pads,
                   ceil_mode=ceil_mode), expected.numpy())


@pytest.mark.parametrize("h,w,kernel,strides,dilations,pads,auto_pad,ceil_mode",
                         [g for g in TORCH_POOLS if g[4] == (1, 1)])
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_matches_torch(h, w, kernel, strides, dilations, pads, auto_pad, ceil_mode,
                                    count_include_pad):
    x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
    expected = F.avg_pool2d(torch.from_numpy(x), kernel, strides, pads[:2], bool(ceil_mode),
                            bool(count_include_pad))
    check(average_pool(x, kernel_shape=kernel, strides=strides, pads=pads, ceil_mode=ceil_mode,
                       count_include_pad=count_include_pad), expected.numpy())


def test_grid_covers_the_required_cases():
    assert {g[-1] for g in CONV_GRID} == {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"}
    assert any(g[2] == g[0] for g in CONV_GRID)  # depthwise
    assert any(k % 2 == 0 for g in POOL_GRID if g[6].startswith("SAME") for k in g[2])
    # a ceil_mode case whose extra window would start in the right padding, and is dropped
    def drops_a_window(h, k, s, p_begin, p_end):
        out = -(-(h + p_begin + p_end - k) // s) + 1
        return (out - 1) * s >= h + p_begin

    assert any(g[7] and g[5] and drops_a_window(g[0], g[2][0], g[3][0], g[5][0], g[5][2])
               for g in POOL_GRID)


def test_global_pools():
    x = rng.standard_normal((2, 3, 5, 4), dtype=np.float32)
    check(global_average_pool(x), F.adaptive_avg_pool2d(torch.from_numpy(x), 1).numpy())
    check(global_max_pool(x), F.adaptive_max_pool2d(torch.from_numpy(x), 1).numpy())


@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([0, 1], repeat=2)))
def test_gemm_matches_torch(trans_a, trans_b):
    a = rng.standard_normal((4, 5) if not trans_a else (5, 4), dtype=np.float32)
    b = rng.standard_normal((5, 3) if not trans_b else (3, 5), dtype=np.float32)
    c = rng.standard_normal(3, dtype=np.float32)
    ta = torch.from_numpy(a.T if trans_a else a)
    tb = torch.from_numpy(b.T if trans_b else b)
    expected = 0.5 * (ta @ tb) + 2.0 * torch.from_numpy(c)
    check(gemm(a, b, c, alpha=0.5, beta=2.0, transA=trans_a, transB=trans_b), expected.numpy())


def test_batch_normalization_matches_torch():
    x = rng.standard_normal((2, 4, 3, 3), dtype=np.float32)
    scale, bias, mean = (rng.standard_normal(4, dtype=np.float32) for _ in range(3))
    var = rng.random(4, dtype=np.float32) + 0.5
    expected = F.batch_norm(torch.from_numpy(x), torch.from_numpy(mean), torch.from_numpy(var),
                            torch.from_numpy(scale), torch.from_numpy(bias), eps=1e-3)
    check(batch_normalization(x, scale, bias, mean, var, epsilon=1e-3), expected.numpy())


def test_softmax_flatten_reshape_pad():
    x = rng.standard_normal((2, 3, 4, 5), dtype=np.float32)
    check(softmax(x, axis=1), torch.softmax(torch.from_numpy(x), 1).numpy())
    assert flatten(x, axis=2).shape == (6, 20)
    assert reshape(x, np.array([0, -1])).shape == (2, 60)
    padded = pad(x, np.array([0, 0, 1, 2, 0, 0, 3, 4]), np.array(-1.0, dtype=np.float32))
    check(padded, F.pad(torch.from_numpy(x), (2, 4, 1, 3), value=-1.0).numpy())


def test_shape_errors_name_every_shape():
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"input shape \(1, 3, 8, 8\) and weight shape \(4, 2, 3, 3\)"):
        conv(x, np.zeros((4, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"input shape \(3, 8, 8\) is not 4-D"):
        conv(x[0], np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"spans 9 pixels, more than the input's 8"):
        max_pool(x, kernel_shape=(9, 9))
    with pytest.raises(ValueError, match=r"pads \[1, 1\] must have 4 values"):
        conv(x, np.zeros((4, 3, 3, 3), np.float32), pads=(1, 1))
    with pytest.raises(ValueError, match=r"A \(2, 3\).*B \(4, 5\)"):
        gemm(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))
