"""What perf_analyzer reads from Triton's statistics extension, as it reads it: a real server
on 127.0.0.1 (both front ends), tritonclient.grpc and tritonclient.http, a dynamically
batched model (lenet5-mnist, through the batcher) and a fixed-batch-1 one (run directly).

perf_analyzer prints a request's server time as "overhead + queue + compute input +
compute infer + compute output", each the field's ns over its count between two
snapshots, and overhead as what `success` holds beyond the others. So `queue` must be
only the time a request waited for its run: time the server spends on anything else
belongs to overhead, never to a queue that a request at concurrency 1 does not have."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from tests.http_serving import running_both
from tests.own_models import linear_classifier
from tests.serving import TIMEOUT

# The server's bookkeeping after each onnxruntime run, made this slow on purpose: far above
# any real queue at concurrency 1, and far below the test's time limits.
BOOKKEEPING_S = 0.05
STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("statistics")
    shutil.copy(models_dir / "lenet5-mnist.onnx", root)
    linear_classifier(root / "fixed1.onnx", batch=1)
    return root


@pytest.fixture
def server(repo):
    with running_both(repo) as running:
        yield running


def grpc_stats(port: int, model: str) -> dict:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        entry = client.get_inference_statistics(model, "1", as_json=True, client_timeout=TIMEOUT)["model_stats"][0]
    finally:
        client.close()
    return {key: (int(d.get("count", 0)), int(d.get("ns", 0))) for key, d in entry["inference_stats"].items()}


def http_stats(port: int, model: str) -> dict:
    client = triton_http.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=TIMEOUT)
    try:
        entry = client.get_inference_statistics(model, "1")["model_stats"][0]
    finally:
        client.close()
    return {key: (d["count"], d["ns"]) for key, d in entry["inference_stats"].items()}


def grpc_infer(port: int, model: str, name: str, x: np.ndarray) -> None:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        tensor = triton_grpc.InferInput(name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        client.infer(model, [tensor], client_timeout=TIMEOUT)
    finally:
        client.close()


def http_infer(port: int, model: str, name: str, x: np.ndarray) -> None:
    client = triton_http.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=TIMEOUT)
    try:
        tensor = triton_http.InferInput(name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        client.infer(model, [tensor])
    finally:
        client.close()


def averages(before: dict, after: dict, requests: int) -> dict[str, float]:
    """Seconds per request of each field, as perf_analyzer computes them, its counts checked."""
    for key in ("success", *STAGES):
        assert after[key][0] - before[key][0] == requests, key
    return {key: (after[key][1] - before[key][1]) / requests / 1e9 for key in ("success", *STAGES)}


@pytest.mark.parametrize("front_end, model, name, shape", [
    ("grpc", "lenet5-mnist", "input", (1, 1, 28, 28)),  # the batcher, its request run at once
    ("http", "fixed1", "x", (1, 1, 8, 8)),  # no batcher: run directly
])
def test_queue_is_only_the_wait_for_a_run(server, front_end, model, name, shape):
    """Sequential requests never wait: their queue stays near 0 however slow the server's
    work after the run, which shows in success (perf_analyzer's overhead) instead."""
    srv, grpc_port, http_port = server
    metrics = srv.plane.metrics
    observe = metrics.observe_batch

    def slow_observe(*args, **kwargs):
        time.sleep(BOOKKEEPING_S)
        return observe(*args, **kwargs)

    metrics.observe_batch = slow_observe  # called after every onnxruntime run, on both paths
    infer, stats, port = ((grpc_infer, grpc_stats, grpc_port) if front_end == "grpc"
                          else (http_infer, http_stats, http_port))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    before = stats(port, model)
    for _ in range(3):
        infer(port, model, name, x)
    each = averages(before, stats(port, model), 3)
    assert each["queue"] < BOOKKEEPING_S / 2, each
    assert each["success"] >= BOOKKEEPING_S, each  # the whole request, the slow bookkeeping included
    assert sum(each[key] for key in STAGES) <= each["success"], each


def test_a_request_behind_a_run_counts_its_wait_as_queue(server):
    """A request that arrives while the model's run is in progress waits for it: that wait,
    and only the second request's, is queue time."""
    srv, grpc_port, _ = server
    batcher = srv.plane.registry.models["lenet5-mnist"].batcher
    run, entered = batcher.run, threading.Event()

    def slow_first_run(x):
        if not entered.is_set():
            entered.set()
            time.sleep(0.5)
        return run(x)

    batcher.run = slow_first_run
    x = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
    before = grpc_stats(grpc_port, "lenet5-mnist")
    first = threading.Thread(target=grpc_infer, args=(grpc_port, "lenet5-mnist", "input", x))
    first.start()
    assert entered.wait(TIMEOUT)
    grpc_infer(grpc_port, "lenet5-mnist", "input", x)  # queued behind the 0.5 s run
    first.join(TIMEOUT)
    each = averages(before, grpc_stats(grpc_port, "lenet5-mnist"), 2)
    assert each["queue"] * 2 >= 0.2, each  # the second waited for most of the first's 0.5 s
    assert sum(each[key] for key in STAGES) <= each["success"], each
