"""What each extra installs, resolved as bench/install_size.py resolves it: the lean
server has no PyTorch and no onnx, the zoo extra no onnx and no onnxruntime."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.install_size import ROOT, closure, from_metadata


def test_serve_extra_has_no_torch_and_no_onnx():
    names = closure("serve")
    assert {"onnxruntime", "grpcio", "numpy", "pillow", "protobuf", "aiohttp"} <= names
    assert not names & {"torch", "onnx", "onnxscript", "tritonclient"}  # its stubs are ours (serve/gen)


def test_trace_extra_adds_the_sdk_and_its_otlp_http_exporter_only():
    """Tracing's packages are in the trace extra alone: the lean server has none of them, and
    the exporter is OTLP/HTTP (no second gRPC stack for an HTTP-only server)."""
    serve, trace = closure("serve"), closure("trace")
    assert not {n for n in serve if n.startswith("opentelemetry")}
    added = trace - serve
    assert {"opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"} <= added
    assert "opentelemetry-exporter-otlp-proto-grpc" not in added and serve <= trace


def test_zoo_extra_has_no_onnx():
    names = closure("zoo")
    assert {"torch", "safetensors", "matplotlib", "numpy"} <= names
    assert not names & {"onnx", "onnxruntime", "onnxscript", "grpcio"}


@pytest.mark.parametrize("extra", ["serve", "export"])
def test_install_size_sums_the_packages(extra):
    result = from_metadata(extra)
    assert result["bytes"] == sum(result["packages"].values()) > 0
    assert "pip" in result["packages"]


@pytest.mark.skipif(os.environ.get("ZOO_TEST_BUILD_VENVS") != "1",
                    reason="builds a venv with the zoo extra from the package index (minutes, 1 GB); "
                           "set ZOO_TEST_BUILD_VENVS=1")
def test_zoo_extra_alone_in_a_real_venv(tmp_path, data_dir):
    """`pip install -c constraints.txt ".[zoo]"` in a fresh venv (no onnx in it), then the
    commands the README shows for zoo, from a directory outside the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"), f"{ROOT}[zoo]"],
                   check=True, timeout=1800)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"ZOO_DATA_DIR": str(data_dir)}
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import onnx"], capture_output=True, env=env).returncode != 0
    for argv in (["summary", "lenet5"], ["viz", "edges", "--index", "0"], ["viz", "lenet5", "--index", "0"]):
        result = subprocess.run([python, "-m", "zoo", *argv], capture_output=True, text=True, cwd=tmp_path, env=env,
                                timeout=600)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "viz" / "lenet5-mnist-test0" / "features-01-conv1.png").exists()
