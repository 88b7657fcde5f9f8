"""The textbook facts about output sizes and parameter counts, on real layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo import get_model
from zoo.summary import conv_output_size, conv_params, format_summary, summarize


def test_ten_3x3x3_filters_hold_280_parameters():
    assert conv_params(3, 3, 10) == 280
    assert sum(p.numel() for p in nn.Conv2d(3, 10, 3).parameters()) == 280


def test_three_layer_unpadded_chain_on_39x39x3():
    net = nn.Sequential(
        nn.Conv2d(3, 10, 3, stride=1),
        nn.Conv2d(10, 20, 5, stride=2),
        nn.Conv2d(20, 40, 5, stride=2),
        nn.Flatten(),
    )
    rows = summarize(net, (3, 39, 39)).rows
    assert [r.output_shape for r in rows] == [(10, 37, 37), (20, 17, 17), (40, 7, 7), (1960,)]
    assert conv_output_size(39, 3) == 37
    assert conv_output_size(37, 5, s=2) == 17
    assert conv_output_size(17, 5, s=2) == 7


def test_lenet5_table():
    rows = summarize(get_model("lenet5"), (1, 28, 28)).rows
    table = [(r.name, r.output_shape, r.params) for r in rows]
    assert table == [
        ("conv1", (6, 28, 28), 156),
        ("relu1", (6, 28, 28), 0),
        ("pool1", (6, 14, 14), 0),
        ("conv2", (16, 10, 10), 2_416),
        ("relu2", (16, 10, 10), 0),
        ("pool2", (16, 5, 5), 0),
        ("flatten", (400,), 0),
        ("fc1", (120,), 48_120),
        ("relu3", (120,), 0),
        ("fc2", (84,), 10_164),
        ("relu4", (84,), 0),
        ("fc3", (10,), 850),
    ]
    text = format_summary(summarize(get_model("lenet5"), (1, 28, 28)), title="lenet5")
    assert "total params: 61,706" in text
    assert "conv1    Conv2d     5x5     1       2    (N, 6, 28, 28)      156" in text


@pytest.mark.parametrize("n,f,p,s,d", [(28, 5, 2, 1, 1), (28, 3, 1, 2, 1), (13, 3, 0, 2, 1),
                                        (14, 3, 1, 3, 2), (7, 2, 0, 2, 1), (10, 4, 1, 3, 1)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_formula_matches_torch_pooling(n, f, p, s, d, ceil_mode):
    out = nn.MaxPool2d(f, s, p, d, ceil_mode=ceil_mode)(torch.zeros(1, 1, n, n))
    assert out.shape[-1] == conv_output_size(n, f, p, s, d, ceil_mode)


def test_formula_matches_torch_conv_with_dilation():
    out = nn.Conv2d(1, 1, 3, stride=2, padding=2, dilation=2)(torch.zeros(1, 1, 15, 15))
    assert out.shape[-1] == conv_output_size(15, 3, 2, 2, 2) == 8


def test_window_larger_than_input_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(3, 5)
