"""Shutdown, readiness, start-up faults and bounded image memory (issue "Hostile input and
shutdown"), against real servers and real clients."""

from __future__ import annotations

import io
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from bench.decode_memory import zero_png
from bench.server_process import start_server
from serve.core import DecodeBudget, Limits, RequestError
from serve.core.limits import MIB
from serve.gen import predictor_pb2 as pb
from serve.gen import predictor_pb2_grpc
from tests.serving import TIMEOUT, predictor_stub, running_server, wait_until_admitted

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def health_status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=TIMEOUT).status


def test_sigterm_answers_every_request_received_before_it(models_dir, mnist_batch):
    """16 clients with a large request each; SIGTERM while they run: all 16 answered OK,
    a request sent after the signal refused, the process exits 0."""
    _, x, _ = mnist_batch
    x = np.tile(x, (64, 1, 1, 1))  # 4,096 images a request: long enough to be in flight
    server = start_server(models_dir, "--max-request-images", "4096", "--grace", "60", "--metrics-port", "0")
    request = pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(shape=list(x.shape), dtype=pb.DTYPE_FLOAT32,
                                                                        data=x.tobytes()))
    outcomes, finished_at = [], []
    lock = threading.Lock()

    def client():
        with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 * MIB)]) as ch:
            try:
                response = predictor_pb2_grpc.PredictorStub(ch).Predict(request, timeout=120)
                outcome = "OK" if len(response.predictions) == len(x) else "SHORT"
            except grpc.RpcError as e:
                outcome = e.code().name
        with lock:
            outcomes.append(outcome)
            finished_at.append(time.monotonic())

    clients = [threading.Thread(target=client) for _ in range(16)]
    for c in clients:
        c.start()
    wait_until_admitted(server, 16, within=60)  # every request received (on a loaded machine, seconds)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30  # the late request goes once the server says it drains, not on a guess
    while "draining" not in server.output:
        assert time.monotonic() < deadline, server.output
        time.sleep(0.02)
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as late:
            predictor_pb2_grpc.PredictorStub(channel).Predict(request, timeout=TIMEOUT)
    for c in clients:
        c.join(150)
    code = server.stop(timeout=150)
    after = sum(t > signalled for t in finished_at)
    print(f"drain: {outcomes.count('OK')} of 16 OK, {after} finished after SIGTERM; late request "
          f"{late.value.code().name}")
    assert outcomes == ["OK"] * 16
    assert after > 0  # some were still running when the signal came, and finished
    assert late.value.code() == grpc.StatusCode.UNAVAILABLE
    assert code == 0 and "Traceback" not in server.output


@pytest.mark.parametrize("strict_readiness", ["true", "false"])
def test_readiness_follows_one_rule(models_dir, tmp_path, strict_readiness):
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    server = start_server(tmp_path, "--strict-readiness", strict_readiness)
    try:
        ready = strict_readiness == "false"  # strict: not every model is ready
        assert health_status(server.address) == (SERVING if ready else NOT_SERVING)
        client = triton.InferenceServerClient(server.address)
        assert client.is_server_ready(client_timeout=TIMEOUT) is ready
        assert client.is_server_live(client_timeout=TIMEOUT)
        assert client.is_model_ready("lenet5-mnist", client_timeout=TIMEOUT)
        client.close()
    finally:
        assert server.stop() == 0
    assert "serving 1 model on" in server.output and "; 1 not ready" in server.output
    assert server.output.count("broken.onnx: cannot load as an ONNX model") == 1  # each load error once


@pytest.mark.parametrize("strict_readiness", ["true", "false"])
def test_a_broken_only_directory_is_never_ready(tmp_path, strict_readiness):
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    server = start_server(tmp_path, "--strict-readiness", strict_readiness)
    try:
        assert health_status(server.address) == NOT_SERVING
        for service in ("zoo.v1.Predictor", "inference.GRPCInferenceService"):
            assert health_status(server.address, service) == NOT_SERVING
        client = triton.InferenceServerClient(server.address)
        assert client.is_server_ready(client_timeout=TIMEOUT) is False
        client.close()
    finally:
        server.stop()


def test_a_busy_port_is_one_line_and_a_nonzero_exit(models_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "serve", "--models", str(models_dir), "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: cannot bind 127.0.0.1:{port}: Address already in use"]


INVALID_BODIES = [("/inference.GRPCInferenceService/ModelInfer", bytes.fromhex("0a02fffe")),
                  ("/inference.GRPCInferenceService/ModelMetadata", b"\x01"),
                  ("/zoo.v1.Predictor/Predict", None)]  # a valid request cut short


def test_a_body_that_is_not_protobuf_is_invalid_argument(models_dir, mnist_batch, caplog):
    _, x, _ = mnist_batch
    valid = pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(
        shape=[1, 1, 28, 28], dtype=pb.DTYPE_FLOAT32, data=x[:1].tobytes())).SerializeToString()
    with caplog.at_level(logging.INFO), running_server(models_dir) as (server, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for method, body in INVALID_BODIES * 3:
                with pytest.raises(grpc.RpcError) as info:
                    channel.unary_unary(method)(body if body is not None else valid[:118 * len(valid) // 900],
                                                timeout=TIMEOUT)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "is not a valid" in info.value.details() and "\n" not in info.value.details()
        counted = sum(s.value for m in server.plane.metrics.registry.collect() if m.name == "zoo_undecodable_requests"
                      for s in m.samples if s.name.endswith("_total"))
    assert counted == 9
    assert not [r for r in caplog.records if r.exc_info]  # never a traceback
    assert len([r for r in caplog.records if "is not a valid" in r.getMessage()]) == 1  # rate-limited


def test_decode_budget_refuses_over_the_whole_and_waits_for_room():
    budget = DecodeBudget(100)
    with pytest.raises(RequestError, match="over this server's decoding budget"):
        budget.reserve(101, 1.0, "images")
    held = budget.reserve(80, None, "images")
    with pytest.raises(RequestError, match="stayed spent"):
        budget.reserve(30, 0.05, "images")
    threading.Timer(0.1, held.__exit__, (None, None, None)).start()
    with budget.reserve(30, 5.0, "images"):  # room once the first is done
        assert budget.used == 30


def test_images_are_bounded_in_bytes_from_their_headers(models_dir):
    bomb = zero_png(4096, 4096, 16)  # 128 MiB of RGBA 16-bit pixels in a small file
    assert len(bomb) < 1 * MIB
    ok = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(ok, format="PNG")
    with running_server(models_dir, limits=Limits(max_decode_bytes=64 * MIB)) as (server, port):
        with predictor_stub(port) as stub:
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(pb.PredictRequest(model="lenet5-mnist", images=pb.EncodedImages(images=[bomb])),
                             timeout=TIMEOUT)
            response = stub.Predict(pb.PredictRequest(model="lenet5-mnist", images=pb.EncodedImages(
                images=[ok.getvalue()] * 8)), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "(4096x4096 RGBA) takes 80.0 MiB, over this server's limit of 64 MiB per request" in info.value.details()
    assert len(response.predictions) == 8 and server.plane.decode_budget.used == 0


def test_sigterm_after_a_malformed_reflection_stream_exits_promptly(models_dir):
    """The reproducer of a hang seen with grpcio's own reflection servicer: one malformed
    message on the reflection stream, then SIGTERM. The server answers the stream
    INVALID_ARGUMENT and exits 0 within --grace."""
    server = start_server(models_dir, "--grace", "2")
    with grpc.insecure_channel(server.address) as channel:
        stream = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        with pytest.raises(grpc.RpcError) as info:
            list(stream(iter([b"\xff\xff\xff\xff"]), timeout=5))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    start = time.monotonic()
    assert server.stop(timeout=30) == 0
    print(f"exited {time.monotonic() - start:.2f} s after SIGTERM")
    assert "Traceback" not in server.output and "cut short" not in server.output


def test_sigterm_exits_within_grace_even_with_a_run_that_will_not_end(tmp_path):
    """A request whose onnxruntime run outlasts --grace (a model that takes many seconds):
    the process still exits 0 within --grace plus the margin, saying what it cut short."""
    from tests.own_models import slow_model

    slow_model(tmp_path / "slow.onnx")
    server = start_server(tmp_path, "--grace", "1", "--ort-threads", "1", "--no-warmup")  # a warm-up would take long
    outcome = {}

    def call():
        client = triton.InferenceServerClient(server.address)
        tensor = triton.InferInput("x", [1, 1, 1, 1], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 1, 1, 1), np.float32))
        try:
            client.infer("slow", [tensor], client_timeout=60)
            outcome["code"] = "OK"
        except Exception as e:  # tritonclient's InferenceServerException
            outcome["code"] = getattr(e, "status", lambda: type(e).__name__)()
        finally:
            client.close()

    client = threading.Thread(target=call)
    client.start()
    time.sleep(1.5)  # the run is under way (it takes many seconds)
    start = time.monotonic()
    code = server.stop(timeout=60)
    took = time.monotonic() - start
    client.join(60)
    print(f"exited {took:.2f} s after SIGTERM; the client saw {outcome}")
    assert code == 0, server.output
    assert took < 10, server.output  # --grace 1 + the margin, with room for a loaded machine: never the run's end
    assert "stopped after --grace 1 s: 1 inference request cut short" in server.output, server.output
    assert "Traceback" not in server.output
    assert outcome["code"] != "OK"
