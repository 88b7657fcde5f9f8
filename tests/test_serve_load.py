"""Load and faults: a bounded soak, SIGTERM under load, deadlines in the middle of a batch."""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.server_process import start_server
from bench.soak import Workload, real_images, run_soak
from serve.core import Limits
from serve.gen import predictor_pb2 as pb
from serve.gen import predictor_pb2_grpc
from tests.serving import TIMEOUT, running_server, slow_down

SOAK_SECONDS = float(os.environ.get("ZOO_SOAK_SECONDS", "60"))
# Allowed growth of the server's RSS from warm-up to the end. It fills during the first half:
# the handler threads, glibc's per-thread malloc arenas, and onnxruntime's memory arenas for
# the runs that go at once (a batch per instance and a full-size run per core, on two sessions
# per model); measured +63-67 MiB for the two lenet5 models.
RSS_MARGIN_MIB = 96
RSS_SECOND_HALF_MIB = 32  # allowed growth over the second half, once all that is full: a leak shows here


@pytest.fixture(scope="module")
def workload(models_dir):
    return Workload(models_dir, real_images())


def test_soak_16_clients_both_apis(models_dir, workload):
    server = start_server(models_dir)
    try:
        result = run_soak(server.address, server.pid, workload, clients=16, seconds=SOAK_SECONDS)
    finally:
        code = server.stop()
    figures = result.summary()
    print(figures)
    assert code == 0
    assert figures["requests"] > 100
    assert figures["unexpected"] == [] and figures["wrong_answers"] == 0
    assert set(figures["statuses"]) == {"OK", "INVALID_ARGUMENT", "NOT_FOUND"}
    assert figures["rss_end_mib"] <= figures["rss_start_mib"] + RSS_MARGIN_MIB
    assert figures["rss_end_mib"] <= figures["rss_half_mib"] + RSS_SECOND_HALF_MIB


def test_sigterm_under_load(models_dir, workload):
    server = start_server(models_dir, "--grace", "10")
    address = server.address
    name = "lenet5-mnist"
    x, expected = workload.images[name][:256], workload.expected[name][:256]
    outcomes, stop = [], threading.Event()  # (sent at, outcome)
    lock = threading.Lock()

    def client():
        with grpc.insecure_channel(address) as channel:
            stub = predictor_pb2_grpc.PredictorStub(channel)
            request = pb.PredictRequest(model=name, tensor=pb.Tensor(shape=list(x.shape), dtype=pb.DTYPE_FLOAT32,
                                                                      data=x.tobytes()))
            for _ in range(10_000):
                if stop.is_set():
                    return
                sent = time.monotonic()
                try:
                    response = stub.Predict(request, timeout=TIMEOUT)
                    logits = np.array([p.logits for p in response.predictions], np.float32)
                    outcome = "OK" if np.allclose(logits, expected, atol=1e-4, rtol=0) else "WRONG"
                except grpc.RpcError as e:
                    outcome = e.code().name
                with lock:
                    outcomes.append((sent, outcome))
                if outcome != "OK":
                    return

    with grpc.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        clients = [threading.Thread(target=client) for _ in range(8)]
        for c in clients:
            c.start()
        time.sleep(2.0)
        served_before = len(outcomes)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert time.monotonic() - signalled < 2.0  # at once, not after the drain
        code = server.stop(timeout=30)
        elapsed = time.monotonic() - signalled
        stop.set()
        for c in clients:
            c.join(TIMEOUT)
    assert code == 0 and elapsed < 10 + 5
    assert served_before > 0
    # Sent before the signal: answered, or (still in transit when it came) refused cleanly.
    # Sent after it: refused; a client slowed down by the load may send its next request only
    # after the listener has closed, and gRPC then cancels it. Never a wrong answer.
    before = {outcome for sent, outcome in outcomes if sent < signalled}
    after = {outcome for sent, outcome in outcomes if sent >= signalled}
    assert before <= {"OK", "UNAVAILABLE"}
    assert after <= {"OK", "UNAVAILABLE", "CANCELLED"}


def test_deadlines_mid_batch_do_not_disturb_the_others(models_dir, workload):
    name = "lenet5-mnist"
    with running_server(models_dir, limits=Limits(max_batch=64, batch_delay_s=0.05)) as (server, port):
        slow_down(server, name, 0.2)
        results = {}

        def call(i, timeout):
            x = workload.images[name][i : i + 1]
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = predictor_pb2_grpc.PredictorStub(channel)
                try:
                    r = stub.Predict(pb.PredictRequest(model=name, tensor=pb.Tensor(
                        shape=[1, 1, 28, 28], dtype=pb.DTYPE_FLOAT32, data=x.tobytes())), timeout=timeout)
                    results[i] = np.array(r.predictions[0].logits, np.float32)
                except grpc.RpcError as e:
                    results[i] = e.code()

        threads = [threading.Thread(target=call, args=(i, 0.1 if i % 2 else TIMEOUT)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    for i in range(12):
        if i % 2:
            assert results[i] == grpc.StatusCode.DEADLINE_EXCEEDED
        else:
            np.testing.assert_allclose(results[i], workload.expected[name][i], atol=1e-4, rtol=0)
