"""OpenTelemetry tracing (--trace-otlp-endpoint, serve.core.tracing): a real server with both
front ends, real clients sending a W3C traceparent, the SDK's in-memory exporter; a real
OTLP/HTTP receiver for the command line's exporter; and the lean install, where tracing is
off and the opentelemetry packages never load."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import io
import json
import secrets
import socket
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from PIL import Image

from serve.__main__ import build_parser, config_from_args, main
from serve.config import ConfigError, HttpConfig, ServeConfig, TraceConfig
from serve.core.otel import Tracer, traces_url
from serve.core.tracing import Outcome
from serve.gen import predictor_pb2 as pb
from serve.server import create_server
from tests.blocked_imports import run_module, run_python
from tests.http_serving import running_both
from tests.serving import TIMEOUT, predictor_stub, serve_config

MODEL = "lenet5-mnist"
STAGES = ["decode", "queue", "inference", "encode"]
STAT_OF_STAGE = {"decode": "compute_input", "queue": "queue", "inference": "compute_infer", "encode": "compute_output"}


@pytest.fixture(scope="module")
def exporter():
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def server(models_dir, exporter):
    config = dataclasses.replace(serve_config(models_dir, http=HttpConfig(port=0)), trace=TraceConfig(exporter=exporter))
    srv = create_server(config)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(grace=1.0)


def traceparent(sampled: bool = True) -> tuple[str, int, int]:
    """A fresh W3C traceparent header, its trace id and its parent span id."""
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-{'01' if sampled else '00'}", int(trace_id, 16), int(parent_id, 16)


def spans_of(server, exporter, trace_id: int) -> list:
    assert server.plane.tracing.flush()
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def durations_ns(server) -> dict[str, int]:
    """The model's statistics so far: each stage's total ns."""
    (stats,) = server.plane.statistics(MODEL, "1")
    return {key: d.ns for key, d in stats.inference_stats.items()}


def assert_request_trace(spans, trace_id: int, parent_id: int, name: str, images: int, stats_delta: dict) -> dict:
    """One server span under the client's span, its four stages as its children, in order and
    within it, each as long as the statistics say; its attributes."""
    (root,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert root.name == name
    assert root.context.trace_id == trace_id
    assert root.parent is not None and root.parent.span_id == parent_id and root.parent.is_remote
    stages = sorted((s for s in spans if s is not root), key=lambda s: s.start_time)
    assert [s.name for s in stages] == STAGES
    assert all(s.parent.span_id == root.context.span_id and s.kind is SpanKind.INTERNAL for s in stages)
    assert root.start_time <= stages[0].start_time and stages[-1].end_time <= root.end_time
    for before, after in zip(stages, stages[1:]):
        assert before.start_time <= before.end_time <= after.start_time
    for stage in stages:  # made from the very timestamps the statistics are
        assert stage.end_time - stage.start_time == pytest.approx(stats_delta[STAT_OF_STAGE[stage.name]], abs=2000)
    attributes = dict(root.attributes)
    assert attributes["triton.model_name"] == MODEL and attributes["triton.model_version"] == 1
    assert attributes["cnn_zoo.batch_size"] == images
    assert root.status.status_code is StatusCode.UNSET and not root.events
    return attributes


def traced(server, exporter, send, *, sampled: bool = True):
    """Send one request with a fresh traceparent; its spans, ids and the statistics' change."""
    header, trace_id, parent_id = traceparent(sampled)
    before = durations_ns(server)
    send(header)
    after = durations_ns(server)
    return spans_of(server, exporter, trace_id), trace_id, parent_id, {k: after[k] - before[k] for k in after}


def infer_input(module, x: np.ndarray):
    tensor = module.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def http_post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# -- one request with a traceparent: its spans, under that parent, on both front ends -------


def test_grpc_model_infer_continues_the_traceparent(server, exporter, mnist_batch):
    _, x, _ = mnist_batch
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{server.port('grpc')}")
    answers = []
    spans, trace_id, parent_id, delta = traced(server, exporter, lambda header: answers.append(
        client.infer(MODEL, [infer_input(tgrpc, x[:3])], headers={"traceparent": header},
                     client_timeout=TIMEOUT).as_numpy("logits")))
    client.close()
    assert answers[0].shape == (3, 10)
    attributes = assert_request_trace(spans, trace_id, parent_id, "inference.GRPCInferenceService/ModelInfer", 3,
                                      delta)
    assert attributes["rpc.system.name"] == "grpc"
    assert attributes["rpc.method"] == "inference.GRPCInferenceService/ModelInfer"
    assert attributes["rpc.response.status_code"] == "OK" and "error.type" not in attributes
    assert attributes["network.peer.address"] == "127.0.0.1" and attributes["network.peer.port"] > 0


def test_grpc_predict_continues_the_traceparent(server, exporter, mnist_batch):
    _, x, _ = mnist_batch
    request = pb.PredictRequest(model=MODEL, tensor=pb.Tensor(shape=list(x[:2].shape), dtype=pb.DTYPE_FLOAT32,
                                                            data=x[:2].tobytes()))
    with predictor_stub(server.port("grpc")) as stub:
        answers = []
        spans, trace_id, parent_id, delta = traced(server, exporter, lambda header: answers.append(
            stub.Predict(request, metadata=(("traceparent", header),), timeout=TIMEOUT)))
    assert len(answers[0].predictions) == 2
    attributes = assert_request_trace(spans, trace_id, parent_id, "zoo.v1.Predictor/Predict", 2, delta)
    assert attributes["rpc.method"] == "zoo.v1.Predictor/Predict" and attributes["rpc.response.status_code"] == "OK"


def test_http_infer_continues_the_traceparent(server, exporter, mnist_batch):
    _, x, _ = mnist_batch
    client = thttp.InferenceServerClient(f"127.0.0.1:{server.port('http')}", network_timeout=TIMEOUT)
    answers = []
    spans, trace_id, parent_id, delta = traced(server, exporter, lambda header: answers.append(
        client.infer(MODEL, [infer_input(thttp, x[:4])], headers={"traceparent": header}).as_numpy("logits")))
    client.close()
    assert answers[0].shape == (4, 10)
    attributes = assert_request_trace(spans, trace_id, parent_id, "POST /v2/models/{model}/infer", 4, delta)
    assert attributes["http.request.method"] == "POST" and attributes["http.route"] == "/v2/models/{model}/infer"
    assert attributes["url.path"] == f"/v2/models/{MODEL}/infer" and attributes["url.scheme"] == "http"
    assert attributes["http.response.status_code"] == 200 and "error.type" not in attributes
    assert attributes["server.port"] == server.port("http") and attributes["client.address"] == "127.0.0.1"


def test_http_predict_with_a_version_continues_the_traceparent(server, exporter, mnist_batch):
    raw, _, _ = mnist_batch
    answers = []
    spans, trace_id, parent_id, delta = traced(server, exporter, lambda header: answers.append(http_post(
        server.port("http"), f"/v2/models/{MODEL}/versions/1/predict", png(raw[0]),
        {"Content-Type": "image/png", "traceparent": header})))
    status, body = answers[0]
    assert status == 200 and len(json.loads(body)["predictions"]) == 1
    attributes = assert_request_trace(spans, trace_id, parent_id, "POST /v2/models/{model}/versions/{version}/predict",
                                      1, delta)
    assert attributes["http.route"] == "/v2/models/{model}/versions/{version}/predict"


@pytest.mark.parametrize("host", ["[::1", "a:b:c", "x" * 300])
def test_a_strange_host_header_is_answered_and_traced(server, exporter, mnist_batch, host):
    import http.client

    header, trace_id, _ = traceparent()
    x = mnist_batch[1][:1]
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                   "data": x.ravel().tolist()}]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=TIMEOUT)
    connection.putrequest("POST", f"/v2/models/{MODEL}/infer", skip_host=True)
    for key, value in (("Host", host), ("traceparent", header), ("Content-Type", "application/json"),
                       ("Content-Length", str(len(body)))):
        connection.putheader(key, value)
    connection.endheaders(body)
    assert connection.getresponse().status == 200
    connection.close()
    (root,) = [s for s in spans_of(server, exporter, trace_id) if s.kind is SpanKind.SERVER]
    assert root.attributes["http.response.status_code"] == 200


# -- errors, sampling, no traceparent -----------------------------------------------------


def send_grpc_infer(server, model: str, header: str, x: np.ndarray):
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{server.port('grpc')}")
    try:
        return client.infer(model, [infer_input(tgrpc, x)], headers={"traceparent": header}, client_timeout=TIMEOUT)
    except Exception as e:  # tritonclient's InferenceServerException
        return e
    finally:
        client.close()


def send_http_infer(server, model: str, header: str, x: np.ndarray):
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                   "data": x.ravel().tolist()}]}).encode()
    return http_post(server.port("http"), f"/v2/models/{model}/infer", body,
                     {"Content-Type": "application/json", "traceparent": header})


SENDERS = {"grpc": (send_grpc_infer, "inference.GRPCInferenceService/ModelInfer", "rpc.response.status_code"),
           "http": (send_http_infer, "POST /v2/models/{model}/infer", "http.response.status_code")}


@pytest.mark.parametrize("front_end", SENDERS)
def test_a_client_error_is_an_exception_event_without_error_status(server, exporter, front_end, mnist_batch):
    """NOT_FOUND (404): the status and the message on the span, no stages; the conventions
    leave a server span's status unset for the client's mistakes."""
    send, name, status_key = SENDERS[front_end]
    header, trace_id, parent_id = traceparent()
    send(server, "no-such-model", header, mnist_batch[1][:1])
    (span,) = spans_of(server, exporter, trace_id)
    assert span.name == name and span.parent.span_id == parent_id
    attributes = dict(span.attributes)
    assert attributes[status_key] == {"grpc": "NOT_FOUND", "http": 404}[front_end]
    assert attributes["triton.model_name"] == "no-such-model" and "triton.model_version" not in attributes
    assert span.status.status_code is StatusCode.UNSET and "error.type" not in attributes
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.type"] == "NOT_FOUND"
    assert "no-such-model" in event.attributes["exception.message"] and MODEL in event.attributes["exception.message"]


@pytest.mark.parametrize("front_end", SENDERS)
def test_a_fault_of_the_server_is_an_error_status(server, exporter, front_end, mnist_batch, monkeypatch):
    """A bug of ours (INTERNAL, 500): error status, error.type, the message the client got."""
    send, name, status_key = SENDERS[front_end]

    def broken(request):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.plane, "infer", broken)
    header, trace_id, _ = traceparent()
    send(server, MODEL, header, mnist_batch[1][:1])
    (span,) = spans_of(server, exporter, trace_id)
    code = {"grpc": "INTERNAL", "http": 500}[front_end]
    assert span.attributes[status_key] == code and span.attributes["error.type"] == str(code)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "internal error: RuntimeError"
    assert span.events[0].attributes["exception.type"] == {"grpc": "INTERNAL", "http": "RuntimeError"}[front_end]


@pytest.mark.parametrize("front_end", SENDERS)
def test_a_traceparent_not_sampled_records_nothing(server, exporter, front_end, mnist_batch):
    send = SENDERS[front_end][0]
    header, trace_id, _ = traceparent(sampled=False)
    answer = send(server, MODEL, header, mnist_batch[1][:1])
    assert not isinstance(answer, Exception) and (front_end == "grpc" or answer[0] == 200)
    assert spans_of(server, exporter, trace_id) == []


@pytest.mark.parametrize("metadata", [(), (("traceparent", "00-not-a-trace-01"),)], ids=["none", "malformed"])
def test_without_a_valid_traceparent_a_request_starts_a_trace(server, exporter, mnist_batch, metadata):
    server.plane.tracing.flush()
    exporter.clear()
    with predictor_stub(server.port("grpc")) as stub:
        x = mnist_batch[1][:1]
        stub.Predict(pb.PredictRequest(model=MODEL, tensor=pb.Tensor(shape=list(x.shape), dtype=pb.DTYPE_FLOAT32,
                                                                     data=x.tobytes())),
                     metadata=metadata, timeout=TIMEOUT)
    server.plane.tracing.flush()
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert root.parent is None and root.name == "zoo.v1.Predictor/Predict"
    assert sorted(s.name for s in spans if s is not root) == sorted(STAGES)
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}


def test_metadata_calls_are_not_traced(server, exporter):
    """Only inference calls, as Triton traces only inference requests (a health probe every
    second would drown them)."""
    server.plane.tracing.flush()
    exporter.clear()
    header, _, _ = traceparent()
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{server.port('grpc')}")
    assert client.is_model_ready(MODEL, headers={"traceparent": header})
    client.get_model_metadata(MODEL, headers={"traceparent": header})
    client.close()
    assert http_post(server.port("http"), "/v2/repository/index", b"", {"traceparent": header})[0] == 200
    server.plane.tracing.flush()
    assert exporter.get_finished_spans() == ()


# -- the command line's OTLP/HTTP exporter, flushed on stop --------------------------------


class OtlpReceiver(http.server.ThreadingHTTPServer):
    """A collector's OTLP/HTTP traces endpoint on loopback: every export request it got."""

    def __init__(self) -> None:
        self.exports: list[tuple[str, str, ExportTraceServiceRequest]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.exports.append((self.path, self.headers["Content-Type"],
                                         ExportTraceServiceRequest.FromString(body)))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def test_the_command_line_exports_over_otlp_http_and_flushes_on_stop(models_dir, mnist_batch):
    receiver = OtlpReceiver()
    try:
        args = build_parser().parse_args(["--models", str(models_dir), "--port", "0", "--http-port", "0",
                                          "--trace-otlp-endpoint", f"http://127.0.0.1:{receiver.server_port}"])
        srv = create_server(config_from_args(args))
        srv.start()
        header, trace_id, parent_id = traceparent()
        try:
            status, _ = send_http_infer(srv, MODEL, header, mnist_batch[1][:2])
            assert status == 200
        finally:
            began = time.perf_counter()
            assert srv.stop(grace=1.0).clean
        assert time.perf_counter() - began < 5  # well within the batch processor's 5 s delay: sent by the stop
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert receiver.exports, "nothing was exported by the time the server stopped"
    assert {(path, kind) for path, kind, _ in receiver.exports} == {("/v1/traces", "application/x-protobuf")}
    spans, resources = [], []
    for _, _, request in receiver.exports:
        for resource_spans in request.resource_spans:
            resources.append({a.key: a.value.string_value for a in resource_spans.resource.attributes})
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert all(r["service.name"] == "cnn-zoo" for r in resources)
    ours = [s for s in spans if s.trace_id == trace_id.to_bytes(16, "big")]
    (root,) = [s for s in ours if s.parent_span_id == parent_id.to_bytes(8, "big")]
    assert root.name == "POST /v2/models/{model}/infer"
    assert sorted(s.name for s in ours if s is not root) == sorted(STAGES)
    assert all(s.parent_span_id == root.span_id for s in ours if s is not root)


def test_close_never_waits_long_for_a_collector_that_does_not_answer(caplog):
    """A collector that accepts the connection and never answers: the stop gives up after
    its timeout and says so, rather than hanging the server's exit."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        tracer = Tracer(f"http://127.0.0.1:{silent.getsockname()[1]}")
        trace = tracer.begin("POST /v2/models/{model}/infer", {}, {}, time.perf_counter(), MODEL)
        trace.end(Outcome({"http.response.status_code": 200}))
        began = time.perf_counter()
        assert tracer.close(timeout_s=0.5) is False
        assert time.perf_counter() - began < 2
    assert "were not sent within 0.5 s" in caplog.text


def ended_trace(tracer: Tracer) -> None:
    trace = tracer.begin("zoo.v1.Predictor/Predict", {}, {"traceparent": traceparent()[0]}, time.perf_counter(), MODEL)
    trace.end(Outcome({"rpc.response.status_code": "OK"}))


def test_spans_are_dropped_and_said_while_the_tracer_is_far_behind(monkeypatch, caplog):
    exporter = InMemorySpanExporter()
    tracer = Tracer("", exporter)
    monkeypatch.setattr("serve.core.otel.MAX_PENDING", 0)  # as if 2048 requests were waiting
    ended_trace(tracer)
    assert tracer.flush() and exporter.get_finished_spans() == ()
    assert "requests wait for their spans to be made; the spans of zoo.v1.Predictor/Predict were dropped" in caplog.text
    monkeypatch.undo()
    ended_trace(tracer)
    assert tracer.flush() and len(exporter.get_finished_spans()) == 1
    assert tracer.close()


def test_a_fault_of_tracing_is_logged_and_the_next_request_traced(monkeypatch, caplog):
    exporter = InMemorySpanExporter()
    tracer = Tracer("", exporter)
    monkeypatch.setattr(tracer, "_emit", lambda *args: 1 / 0)
    ended_trace(tracer)
    assert tracer.flush() and exporter.get_finished_spans() == ()
    assert "the spans of zoo.v1.Predictor/Predict were not made: ZeroDivisionError" in caplog.text
    monkeypatch.undo()
    ended_trace(tracer)
    assert tracer.flush() and len(exporter.get_finished_spans()) == 1
    assert tracer.close()


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1:8000", {"server.address": "127.0.0.1", "server.port": 8000}),
    ("[::1]:8000", {"server.address": "::1", "server.port": 8000}),
    ("example.com", {"server.address": "example.com"}),
    ("a:b:c", {"server.address": "a:b:c"}),
    ("host:99999999999", {"server.address": "host"}),
    ("[::1", {"server.address": "::1"})])
def test_a_host_header_of_any_form_gives_attributes_never_an_error(host, expected):
    from serve.http.tracing import _server

    assert _server(host) == expected


def test_traces_url_adds_the_otlp_path_to_a_base_address():
    assert traces_url("http://localhost:4318") == "http://localhost:4318/v1/traces"
    assert traces_url("http://localhost:4318/") == "http://localhost:4318/v1/traces"
    assert traces_url("https://collector:4318/v1/traces") == "https://collector:4318/v1/traces"
    assert traces_url("http://gateway/otlp/traces") == "http://gateway/otlp/traces"  # a path of its own, as given


@pytest.mark.parametrize("url", ["localhost:4318", "grpc://collector:4317", "http://", "http://host:port/v1/traces"])
def test_a_bad_endpoint_is_one_line_before_anything_loads(url, capsys, tmp_path):
    with pytest.raises(ConfigError, match="--trace-otlp-endpoint"):
        ServeConfig(trace=TraceConfig(url)).check()
    assert main(["--models", str(tmp_path / "none"), "--trace-otlp-endpoint", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --trace-otlp-endpoint") and "http://localhost:4318" in err[0]


# -- off by default, and never loaded when off -------------------------------------------


def test_tracing_is_off_by_default(models_dir):
    assert ServeConfig().trace is None
    assert config_from_args(build_parser().parse_args([])).trace is None
    with running_both(models_dir) as (srv, _, _):
        assert srv.plane.tracing is None


SERVE_WITHOUT_TRACING = """
import json, sys, urllib.request
from pathlib import Path
import grpc, numpy as np
from serve.__main__ import build_parser, config_from_args
from serve.gen import grpc_service_pb2 as kpb, grpc_service_pb2_grpc as kpb_grpc
from serve.server import create_server
server = create_server(config_from_args(build_parser().parse_args(
    ["--models", {models!r}, "--port", "0", "--http-port", "0"])))
server.start()
x = np.zeros((1, 1, 28, 28), np.float32)
request = kpb.ModelInferRequest(model_name="lenet5-mnist", raw_input_contents=[x.tobytes()])
request.inputs.add(name="input", datatype="FP32", shape=x.shape)
tp = {{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
with grpc.insecure_channel(f"127.0.0.1:{{server.port('grpc')}}") as channel:
    answer = kpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, metadata=tuple(tp.items()), timeout=10)
body = json.dumps({{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}}]}})
http = urllib.request.Request(f"http://127.0.0.1:{{server.port('http')}}/v2/models/lenet5-mnist/infer",
                              data=body.encode(), headers=tp)
with urllib.request.urlopen(http, timeout=10) as response:
    outputs = json.load(response)["outputs"]
server.stop(grace=1.0)
assert len(answer.raw_output_contents[0]) == 40 and outputs[0]["shape"] == [1, 10]
print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
"""


def test_without_the_flag_opentelemetry_is_never_imported(models_dir):
    """Installed here, yet a server serving both front ends, with traceparents sent, never loads it."""
    result = run_python(SERVE_WITHOUT_TRACING.format(models=str(models_dir)), blocked=(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


def test_the_lean_install_serves_without_opentelemetry(models_dir):
    """As `pip install ".[serve]"` has it: the packages cannot be imported, and the server serves."""
    result = run_python(SERVE_WITHOUT_TRACING.format(models=str(models_dir)), blocked=("opentelemetry",), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


def test_an_http_only_server_traces_without_grpcio(models_dir):
    """The OTLP/HTTP exporter brings no gRPC stack: an HTTP-only server traces with grpcio unimportable."""
    code = f"""
import json, urllib.request
from pathlib import Path
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from serve.config import HttpConfig, ModelsConfig, ServeConfig, TraceConfig
from serve.server import create_server
exporter = InMemorySpanExporter()
server = create_server(ServeConfig(ModelsConfig(Path({str(models_dir)!r})), grpc=None, http=HttpConfig(port=0),
                                   trace=TraceConfig(exporter=exporter)))
server.start()
body = json.dumps({{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}}]}})
request = urllib.request.Request(f"http://127.0.0.1:{{server.port('http')}}/v2/models/lenet5-mnist/infer",
                                 data=body.encode(), headers={{"traceparent": "{traceparent()[0]}"}})
urllib.request.urlopen(request, timeout=10).read()
server.stop(grace=1.0)
import opentelemetry.exporter.otlp.proto.http.trace_exporter  # loaded, and without grpcio
print("spans:", sorted(s.name for s in exporter.get_finished_spans()))
"""
    result = run_python(code, blocked=("grpc", "grpc_health", "grpc_reflection"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "spans: ['POST /v2/models/{model}/infer', 'decode', 'encode', 'inference', 'queue']" in result.stdout


def test_the_flag_without_the_extra_is_one_line(models_dir):
    result = run_module("serve", ["--models", str(models_dir), "--port", "0", "--trace-otlp-endpoint",
                                  "http://127.0.0.1:4318"], blocked=("opentelemetry",), timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: tracing needs the trace extra: pip install 'cnn-zoo[trace]'")
