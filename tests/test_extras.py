"""What each extra installs, resolved as bench/install_size.py resolves it: the lean
server has no PyTorch and no onnx, the zoo extra no onnx and no onnxruntime."""

from __future__ import annotations

import pytest

from bench.install_size import closure, from_metadata


def test_serve_extra_has_no_torch_and_no_onnx():
    names = closure("serve")
    assert {"onnxruntime", "grpcio", "numpy", "pillow", "tritonclient"} <= names
    assert not names & {"torch", "onnx", "onnxscript"}


def test_zoo_extra_has_no_onnx():
    names = closure("zoo")
    assert {"torch", "safetensors", "matplotlib", "numpy"} <= names
    assert not names & {"onnx", "onnxruntime", "onnxscript", "grpcio"}


@pytest.mark.parametrize("extra", ["serve", "export"])
def test_install_size_sums_the_packages(extra):
    result = from_metadata(extra)
    assert result["bytes"] == sum(result["packages"].values()) > 0
    assert "pip" in result["packages"]
