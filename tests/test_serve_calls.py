"""Every call either front end serves is declared once (serve/core/calls.py), and what is an
inference call is what drain admission refuses. Nothing here is listed by hand: the gRPC
methods come from the server's reflection and a real call to each, the HTTP routes from the
running application's router."""

from __future__ import annotations

import urllib.error
import urllib.request

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from serve.core.calls import CALLS
from serve.http.routes import call_of_route
from tests.http_serving import running_both
from tests.serving import TIMEOUT


@pytest.fixture(scope="module")
def server(models_dir):
    with running_both(models_dir) as running:
        yield running


def reflected_methods(port: int) -> list[tuple[str, bool, bool]]:
    """(method path, client streaming, server streaming) of every service reflection lists."""
    from google.protobuf import descriptor_pb2

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        names = [s.name for r in stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]), timeout=TIMEOUT) for s in r.list_services_response.service]
        methods = []
        for name in names:
            answer = next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
                file_containing_symbol=name)]), timeout=TIMEOUT)))
            for blob in answer.file_descriptor_response.file_descriptor_proto:
                proto = descriptor_pb2.FileDescriptorProto.FromString(blob)
                for service in proto.service:
                    full = f"{proto.package}.{service.name}" if proto.package else service.name
                    if full == name:
                        methods += [(f"/{full}/{m.name}", m.client_streaming, m.server_streaming)
                                    for m in service.method]
    return methods


def registered(port: int, method: str, client_streaming: bool, server_streaming: bool) -> bool:
    """Whether the server has a handler for `method`: anything but UNIMPLEMENTED to a real call."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
                (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
            (client_streaming, server_streaming)]
        call = kind(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        request = iter([b""]) if client_streaming else b""
        try:
            answer = call(request, timeout=1.0)
            if server_streaming:
                next(iter(answer), None)
        except grpc.RpcError as e:
            return e.code() != grpc.StatusCode.UNIMPLEMENTED
    return True


def test_every_registered_grpc_method_is_a_declared_call(server):
    plane_server, port, _ = server
    declared = plane_server.front_ends["grpc"].calls
    methods = reflected_methods(port)
    assert len(methods) > 20  # Predictor, KServe, health, reflection
    served = [m for m, cs, ss in methods if registered(port, m, cs, ss)]
    assert {m for m in served if "/zoo.v1.Predictor/" in m} == {
        "/zoo.v1.Predictor/Predict", "/zoo.v1.Predictor/ListModels", "/zoo.v1.Predictor/GetModel"}
    assert set(served) <= set(declared), f"served but undeclared: {sorted(set(served) - set(declared))}"
    assert set(declared) <= set(served), f"declared but not served: {sorted(set(declared) - set(served))}"


def test_every_http_route_is_a_declared_call(server):
    plane_server, _, _ = server
    app = plane_server.front_ends["http"]._runner.app  # noqa: SLF001  (the running application)
    routes = list(app.router.routes())
    assert len(routes) > 20
    for r in routes:
        assert r.name is not None, f"{r.method} {r.resource.canonical} is not declared as a call"
        assert call_of_route(r.name) in CALLS.values()


def test_inference_calls_are_the_ones_that_run_a_model():
    assert {c.name for c in CALLS.values() if c.inference} == {"infer", "predict", "features", "explain"}


def test_draining_refuses_exactly_the_inference_calls_on_both_front_ends(models_dir):
    """Every method and route, from the front ends' own tables: the inference ones refused
    (UNAVAILABLE, 503) once draining began, every other one still reaching its handler."""
    with running_both(models_dir) as (plane_server, port, http_port):
        plane_server.plane.draining.set()
        grpc_calls = plane_server.front_ends["grpc"].calls
        for method, declared in grpc_calls.items():
            if "ServerReflection" in method or "Watch" in method:
                continue  # streams: reflection answers, Watch waits for a change
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                try:
                    call(b"", timeout=TIMEOUT)
                    code, details = grpc.StatusCode.OK, ""
                except grpc.RpcError as e:
                    code, details = e.code(), e.details()
            refused = code == grpc.StatusCode.UNAVAILABLE and "shutting down" in details
            assert refused == declared.inference, (method, code, details)
        app = plane_server.front_ends["http"]._runner.app  # noqa: SLF001
        for r in app.router.routes():
            path = r.resource.canonical.replace("{model}", "lenet5-mnist").replace("{version}", "1")
            if "{" in path or r.method == "HEAD":
                continue  # the static files' prefix route
            request = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}", method=r.method,
                                             data=b"{}" if r.method == "POST" else None)
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                    status, body = answer.status, answer.read()
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read()
            refused = status == 503 and b"shutting down" in body
            assert refused == call_of_route(r.name).inference, (r.method, path, status, body[:200])
