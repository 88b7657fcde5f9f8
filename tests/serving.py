"""Helpers for tests that run a real server on 127.0.0.1, port 0."""

from __future__ import annotations

import contextlib
import time

import grpc

from serve.core import Limits
from serve.gen import predictor_pb2_grpc
from serve.grpc.server import create_server

TIMEOUT = 10.0  # every RPC in the tests is bounded


@contextlib.contextmanager
def running_server(models_dir, **overrides):
    limits = overrides.pop("limits", Limits())
    server, port = create_server(models_dir=models_dir, host="127.0.0.1", port=0, limits=limits, **overrides)
    server.start()
    try:
        yield server, port
    finally:
        server.stop(grace=1.0)


def slow_down(server, name: str, seconds: float) -> None:
    """Make every onnxruntime run of the served model `name` take `seconds` longer, in the
    direct path and in its batcher alike, so requests overlap on purpose."""
    model = server.core.registry.models[name]
    original = model.run

    def run(x):
        time.sleep(seconds)
        return original(x)

    model.run = run
    if model.key in server.core.batchers:
        server.core.batchers[model.key].run = run


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
