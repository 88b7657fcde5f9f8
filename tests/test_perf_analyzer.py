"""Triton's perf_analyzer against a real server, both front ends, a dynamically batched and a
fixed-batch-1 model: it reads ModelConfig, ModelMetadata and the statistics as Triton's and
completes. It runs in the Debian trixie chroot that bench/perf_analyzer.py prepares (root,
and the Debian mirror and PyPI the first time), so it is skipped unless
ZOO_TEST_PERF_ANALYZER=1. Its windows are shorter and its stability looser than the
defaults (which bench/perf_analyzer.py runs), so that it finishes on a busy machine."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.http_serving import running_both
from tests.own_models import linear_classifier

pytestmark = pytest.mark.skipif(os.environ.get("ZOO_TEST_PERF_ANALYZER") != "1",
                                reason="needs root and the chroot of bench/perf_analyzer.py: ZOO_TEST_PERF_ANALYZER=1")

FAST = ("--measurement-interval", "1000", "--stability-percentage", "100")


@pytest.fixture(scope="module")
def perf_analyzer():
    from bench.perf_analyzer import DEFAULT_CACHE, MIRROR, VERSION, prepare

    root, binary, _ = prepare(DEFAULT_CACHE, MIRROR, VERSION)
    return root, binary


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("perf-analyzer")
    shutil.copy(models_dir / "lenet5-mnist.onnx", root)
    linear_classifier(root / "fixed1.onnx", batch=1)
    with running_both(root) as running:
        yield running


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("model", ["lenet5-mnist", "fixed1"])
def test_perf_analyzer_completes(perf_analyzer, server, protocol, model):
    from bench.perf_analyzer import chroot_output, parse_levels

    root, binary = perf_analyzer
    srv, grpc_port, http_port = server
    port = grpc_port if protocol == "grpc" else http_port
    done = chroot_output(root, binary, "-m", model, "-i", protocol, "-u", f"127.0.0.1:{port}", *FAST,
                         timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (level,) = parse_levels(output)
    assert level["stable"] and level["request_count"] > 0, output
    assert level["success_count"] == level["inference_count"] == level["execution_count"] > 0, output
    stats = srv.plane.statistics(model)[0].inference_stats
    assert stats["success"].count >= level["success_count"]
