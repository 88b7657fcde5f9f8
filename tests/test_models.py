"""Every registered model, through the registry: shapes, dtypes, sizes, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo import get_model, list_models, register_model
from zoo.registry import _MODELS
from zoo.summary import summarize

MODELS = list_models()


def test_registry_lists_the_four_models():
    assert MODELS == ["lenet5", "lenet5-classic", "resnet-mini", "twoblock-cnn"]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'lenet6'.*lenet5, lenet5-classic"):
        get_model("lenet6")


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5")(lambda: nn.Identity())
    assert "lenet5" in _MODELS


@pytest.mark.parametrize("name", MODELS)
def test_builders_are_keyword_only(name):
    with pytest.raises(TypeError):
        _MODELS[name](10)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 5])
def test_forward_shape_and_dtype(name, batch):
    torch.manual_seed(0)
    net = get_model(name).eval()
    out = net(torch.randn(batch, 1, 28, 28))
    assert out.shape == (batch, 10)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_eval_mode_is_deterministic_and_batch_independent(name):
    torch.manual_seed(0)
    net = get_model(name).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        whole = net(x)
        one_by_one = torch.cat([net(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(whole, one_by_one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    net = get_model(name).train()
    loss = nn.functional.cross_entropy(net(torch.randn(8, 1, 28, 28)), torch.arange(8))
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", MODELS)
def test_size_limit_and_summary_totals(name):
    net = get_model(name)
    total = sum(p.numel() for p in net.parameters())
    assert total <= 1_500_000
    summary = summarize(net, (1, 28, 28))
    assert summary.total_params == total
    assert summary.rows[-1].output_shape == (10,)


def test_lenet5_has_exactly_61706_parameters():
    assert sum(p.numel() for p in get_model("lenet5").parameters()) == 61_706


def test_lenet5_classic_uses_tanh_and_average_pooling():
    kinds = {type(m) for m in get_model("lenet5-classic").modules()}
    assert nn.Tanh in kinds and nn.AvgPool2d in kinds
    assert nn.ReLU not in kinds and nn.MaxPool2d not in kinds


def test_twoblock_cnn_matches_the_keras_tutorial():
    net = get_model("twoblock-cnn")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (32, (3, 3), (1, 1)), (64, (3, 3), (1, 1))]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(64 * 7 * 7, 100), (100, 10)]
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.4]


def test_resnet_mini_uses_modern_parts():
    net = get_model("resnet-mini")
    kinds = {type(m) for m in net.modules()}
    assert {nn.BatchNorm2d, nn.AdaptiveAvgPool2d} <= kinds
    assert any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in net.modules())


def test_builtin_names_known_without_torch_are_the_registered_ones():
    from zoo.registry import BUILTIN_MODELS

    registered_here = {name for name, builder in _MODELS.items() if builder.__module__ == "zoo.models"}
    assert registered_here == set(BUILTIN_MODELS)
