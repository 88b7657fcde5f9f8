"""Helpers for tests that run a real server on 127.0.0.1, port 0."""

from __future__ import annotations

import contextlib
import re
import time
import urllib.request
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from serve.config import GrpcConfig, HttpConfig, ModelsConfig, ServeConfig
from serve.core import Limits
from serve.gen import predictor_pb2_grpc
from serve.server import create_server

TIMEOUT = 10.0  # every RPC in the tests is bounded


def serve_config(models_dir, *, limits: Limits | None = None, grpc: bool = True, http: HttpConfig | None = None,
                 tls_cert=None, tls_key=None, metrics_port=None, device="cpu", strict=False, strict_readiness=True,
                 model_name=None) -> ServeConfig:
    """The server's config for a test: loopback, port 0 for every front end it serves."""
    return ServeConfig(
        ModelsConfig(Path(models_dir), model_name, device, limits or Limits(), strict, strict_readiness),
        host="127.0.0.1", grpc=GrpcConfig(port=0, tls_cert=tls_cert, tls_key=tls_key) if grpc else None,
        http=http, metrics_port=metrics_port)


@contextlib.contextmanager
def running_server(models_dir, **overrides):
    """Yields (server, its gRPC port)."""
    server = create_server(serve_config(models_dir, **overrides))
    server.start()
    try:
        yield server, server.port("grpc")
    finally:
        server.stop(grace=1.0)


def slow_down(server, name: str, seconds: float) -> None:
    """Make every onnxruntime run of the served model `name` take `seconds` longer, in the
    direct path and in its batcher alike, so requests overlap on purpose."""
    model = server.plane.registry.models[name]
    original = model.run

    def run(x):
        time.sleep(seconds)
        return original(x)

    model.run = run
    if model.batcher is not None:
        model.batcher.run = run


@contextlib.contextmanager
def predictor_stub(port):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield predictor_pb2_grpc.PredictorStub(channel)


@contextlib.contextmanager
def triton_client(port):
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        yield client
    finally:
        client.close()


def wait_until(condition, within: float = TIMEOUT, what: str = "the condition") -> None:
    """Until `condition()` is true; an AssertionError naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:g} s: {what}"
        time.sleep(0.01)


def admitted(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=TIMEOUT) as page:
        families = text_string_to_metric_families(page.read().decode())
        return sum(s.value for f in families if f.name == "zoo_requests_admitted" for s in f.samples
                   if s.name.endswith("_total"))


def wait_until_admitted(server, count: int, within: float) -> None:
    """Until the server has taken in `count` inference requests, by its metrics."""
    port = re.search(r"metrics on :(\d+)/metrics", server.output).group(1)
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + within
    while (seen := admitted(url)) < count:
        assert time.monotonic() < deadline, f"{seen:g} of {count} requests received within {within:g} s"
        time.sleep(0.05)
