"""The HTTP front end, driven by real clients: tritonclient.http (binary and JSON), urllib
for images and errors, beside tritonclient.grpc and the Predictor stub on the same server."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import urllib.error
import urllib.request
import uuid

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serve.core import Limits
from serve.gen import predictor_pb2 as pb
from serve.gen import predictor_pb2_grpc
from tests.http_serving import running_both
from tests.own_models import linear_classifier, two_input_model
from tests.serving import TIMEOUT, slow_down

EXAMPLES = ("digit-7-0.png", "digit-3-18.png")


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    """The zoo's two models and models of part 2: fixed batch 1 without metadata, two
    inputs (FP32 and INT64), two versions."""
    root = tmp_path_factory.mktemp("http-models")
    for path in models_dir.glob("*.onnx"):
        shutil.copy(path, root)
    linear_classifier(root / "fixed1.onnx", batch=1)
    two_input_model(root / "pair.onnx")
    for version in (1, 2):
        linear_classifier(root / "versioned" / str(version) / "model.onnx", batch="N", seed=version)
    return root


@pytest.fixture(scope="module")
def server(repo):
    with running_both(repo, cors_origins=("http://allowed.test",),
                      limits=Limits(max_batch=64, batch_delay_s=0.002)) as running:
        yield running


@pytest.fixture
def http_client(server):
    c = thttp.InferenceServerClient(f"127.0.0.1:{server[2]}", network_timeout=TIMEOUT)
    yield c
    c.close()


@pytest.fixture
def grpc_client(server):
    c = tgrpc.InferenceServerClient(f"127.0.0.1:{server[1]}")
    yield c
    c.close()


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
         ) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sample_inputs(metadata: dict, rng) -> dict[str, np.ndarray]:
    """Random inputs for a model's metadata: 3 images where the batch is free."""
    arrays = {}
    for spec in metadata["inputs"]:
        shape = [3 if d == -1 else d for d in spec["shape"]]
        dtype = {"FP32": np.float32, "INT64": np.int64}[spec["datatype"]]
        arrays[spec["name"]] = (rng.standard_normal(shape) * 10).astype(dtype)
    return arrays


def infer_all(client, module, model: str, arrays: dict, binary: bool | None, outputs: list[str], version=""):
    inputs = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), {np.float32: "FP32", np.int64: "INT64"}[array.dtype.type])
        if binary is None:
            tensor.set_data_from_numpy(array)
        else:
            tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    requested = [module.InferRequestedOutput(o) if binary is None else module.InferRequestedOutput(o, binary_data=binary)
                 for o in outputs]
    result = client.infer(model, inputs, outputs=requested, model_version=version)
    return {o: result.as_numpy(o) for o in outputs}


def test_every_model_round_trips_binary_and_json_as_grpc(server, http_client, grpc_client):
    rng = np.random.default_rng(0)
    index = http_client.get_model_repository_index()
    assert {(m["name"], m["version"]) for m in index} >= {("lenet5-mnist", "1"), ("fixed1", "1"), ("pair", "1"),
                                                          ("versioned", "1"), ("versioned", "2")}
    for entry in index:
        name, version = entry["name"], entry["version"]
        metadata = http_client.get_model_metadata(name, version)
        assert metadata == json_format.MessageToDict(grpc_client.get_model_metadata(name, version),
                                                     preserving_proto_field_name=True) | {
            "inputs": metadata["inputs"], "outputs": metadata["outputs"]}
        arrays = sample_inputs(metadata, rng)
        outputs = [o["name"] for o in metadata["outputs"]]
        expected = infer_all(grpc_client, tgrpc, name, arrays, None, outputs, version)
        for binary in (True, False):
            got = infer_all(http_client, thttp, name, arrays, binary, outputs, version)
            for o in outputs:
                assert got[o].shape == expected[o].shape, (name, o, binary)
                assert got[o].dtype == expected[o].dtype, (name, o, binary)
                np.testing.assert_allclose(got[o], expected[o], rtol=0, atol=1e-5, err_msg=f"{name} {o} {binary}")


def test_zoo_logits_equal_onnxruntime_directly(server, http_client, models_dir, mnist_batch):
    import onnxruntime as ort

    session = ort.InferenceSession(str(models_dir / "lenet5-mnist.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(["logits"], {"input": mnist_batch[1]})[0]
    for binary in (True, False):
        got = infer_all(http_client, thttp, "lenet5-mnist", {"input": mnist_batch[1]}, binary, ["logits"])["logits"]
        assert got.shape == (64, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_uint8_pixels_and_no_outputs_named(server, http_client, grpc_client, mnist_batch):
    pixels = mnist_batch[0][:4, None]
    tensor = thttp.InferInput("input", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    got = http_client.infer("lenet5-mnist", [tensor]).as_numpy("logits")  # binary_data_output: every output
    gtensor = tgrpc.InferInput("input", list(pixels.shape), "UINT8")
    gtensor.set_data_from_numpy(pixels)
    np.testing.assert_allclose(got, grpc_client.infer("lenet5-mnist", [gtensor]).as_numpy("logits"), atol=1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_classification_extension(server, http_client, grpc_client, mnist_batch, binary):
    x = mnist_batch[1][:5]
    tensor = thttp.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    got = http_client.infer("lenet5-mnist", [tensor], outputs=[
        thttp.InferRequestedOutput("logits", binary_data=binary, class_count=3)]).as_numpy("logits")
    gtensor = tgrpc.InferInput("input", list(x.shape), "FP32")
    gtensor.set_data_from_numpy(x)
    expected = grpc_client.infer("lenet5-mnist", [gtensor], outputs=[
        tgrpc.InferRequestedOutput("logits", class_count=3)]).as_numpy("logits")
    assert got.shape == expected.shape == (5, 3)
    decode = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v)
    got, expected = decode(got), decode(expected)
    assert [row[0].split(":")[2] for row in got] == [str(label) for label in mnist_batch[2][:5]]
    np.testing.assert_allclose([[float(v.split(":")[0]) for v in row] for row in got],
                               [[float(v.split(":")[0]) for v in row] for row in expected], atol=1e-5)


def test_server_and_model_endpoints_match_grpc(server, http_client, grpc_client):
    assert http_client.is_server_live() and http_client.is_server_ready()
    assert http_client.is_model_ready("lenet5-mnist") and http_client.is_model_ready("versioned", "1")
    assert http_client.get_server_metadata() == json_format.MessageToDict(grpc_client.get_server_metadata())
    for name, version in (("lenet5-mnist", ""), ("versioned", "2"), ("pair", "")):
        http_config = http_client.get_model_config(name, version)
        grpc_config = json_format.MessageToDict(grpc_client.get_model_config(name, version).config,
                                                preserving_proto_field_name=True)
        assert http_config == grpc_config
    http_client.infer("versioned", [infer_input_np("x", np.zeros((1, 1, 8, 8), np.float32))], model_version="1")
    stats = http_client.get_inference_statistics("versioned", "1")["model_stats"]
    assert len(stats) == 1 and stats[0]["version"] == "1" and int(stats[0]["inference_count"]) >= 1
    assert {s["name"] for s in http_client.get_inference_statistics()["model_stats"]} >= {"lenet5-mnist", "pair"}


def infer_input_np(name: str, array: np.ndarray) -> thttp.InferInput:
    tensor = thttp.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


def predictor_answer(port: int, files: list[bytes], top_k: int) -> pb.PredictResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return predictor_pb2_grpc.PredictorStub(channel).Predict(
            pb.PredictRequest(model="lenet5-mnist", images=pb.EncodedImages(images=files), top_k=top_k),
            timeout=TIMEOUT)


def assert_same_answers(answer: dict, expected: pb.PredictResponse) -> None:
    assert answer["model"] == expected.model and answer["version"] == expected.version
    assert len(answer["predictions"]) == len(expected.predictions)
    for got, want in zip(answer["predictions"], expected.predictions):
        assert [s["index"] for s in got["top_k"]] == [s.index for s in want.top_k]
        assert [s["label"] for s in got["top_k"]] == list(s.label for s in want.top_k)
        np.testing.assert_allclose([s["probability"] for s in got["top_k"]], [s.probability for s in want.top_k],
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got["logits"], want.logits, rtol=1e-6, atol=1e-6)
        assert got["inverted"] is False


def test_images_raw_and_multipart_answer_as_grpc_predict(server, examples_dir):
    files = [(examples_dir / name).read_bytes() for name in EXAMPLES]
    status, headers, body = call(server[2], "POST", "/v2/models/lenet5-mnist/predict?top_k=3", files[0],
                                 {"Content-Type": "image/png"})
    assert status == 200, body
    answer = json.loads(body)
    assert answer["predictions"][0]["top_k"][0]["label"] == "7"
    assert_same_answers(answer, predictor_answer(server[1], files[:1], 3))
    boundary = uuid.uuid4().hex
    form = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{n}\"\r\n"
                    f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for n, data in zip(EXAMPLES, files))
    form += f"--{boundary}--\r\n".encode()
    status, _, body = call(server[2], "POST", "/v2/models/lenet5-mnist/versions/1/predict?top_k=2", form,
                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, body
    assert_same_answers(json.loads(body), predictor_answer(server[1], files, 2))


@pytest.fixture(scope="module")
def examples_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "serve" / "examples"


GOOD = np.zeros((2, 1, 28, 28), np.float32)


def infer_body(shape=(2, 1, 28, 28), datatype="FP32", raw: bytes | None = GOOD.tobytes(), name="input",
               data=None, outputs=None) -> tuple[bytes, dict]:
    tensor = {"name": name, "shape": list(shape), "datatype": datatype}
    if raw is not None:
        tensor["parameters"] = {"binary_data_size": len(raw)}
    if data is not None:
        tensor["data"] = data
    header = {"inputs": [tensor]}
    if outputs:
        header["outputs"] = [{"name": o} for o in outputs]
    text = json.dumps(header).encode()
    if raw is None:
        return text, {"Content-Type": "application/json"}
    return text + raw, {"Inference-Header-Content-Length": str(len(text)), "Content-Type": "application/octet-stream"}


INFER = "/v2/models/lenet5-mnist/infer"
BAD_INFER = [  # the HTTP twins of test_serve_errors' ModelInfer cases, with their messages
    ("output twice", infer_body(outputs=["logits", "logits"]), 400, "outputs[1].name: output 'logits' is asked for twice"),
    ("input name", infer_body(name="pixels"), 400, "inputs[0].name: 'pixels' is not an input of lenet5-mnist; expected 'input'"),
    ("datatype", infer_body(datatype="FP64"), 400, "inputs[0].datatype: 'FP64' is not supported for input 'input'; expected FP32"),
    ("shape", infer_body(shape=(2, 28, 29)), 400, "inputs[0].shape: shape [2, 28, 29]"),
    ("byte length", infer_body(raw=b"\0" * 10), 400, "inputs[0] (binary data): 10 bytes do not match shape"),
    ("typed count", infer_body(raw=None, data=[0.0] * 7), 400, "inputs[0].data: 7 values do not match shape"),
    ("output name", infer_body(outputs=["probs"]), 400, "outputs[0].name: 'probs' is not an output"),
    ("empty batch", infer_body(shape=(0, 1, 28, 28), raw=b""), 400, "empty batch"),
    ("too many images", infer_body(shape=(2000, 1, 28, 28), raw=b"\0" * (2000 * 3136)), 413,
     "inputs[0].shape: 2000 images exceed this server's limit of 1024 per request"),
    ("not JSON", (b"{inputs", {}), 400, "request body: not valid JSON"),
    ("no inputs", (b"{}", {}), 400, "request body: request must contain ['inputs'] properties"),
    ("strings as data", infer_body(raw=None, data=["a"] * 1568), 400, "inputs[0].data: expected numbers"),
    ("lying header length", (infer_body()[0], {"Inference-Header-Content-Length": "99999999"}), 400,
     "Inference-Header-Content-Length: 99999999 is not within the body"),
    ("truncated binary", (infer_body()[0][:-100], infer_body()[1]), 400,
     "inputs[0].parameters.binary_data_size: 6272 bytes from offset 0 exceed the 6172 bytes"),
]


@pytest.mark.parametrize("case,request_,status,message", BAD_INFER, ids=[c[0] for c in BAD_INFER])
def test_infer_bad_input(server, case, request_, status, message):
    body, headers = request_
    got, _, answer = call(server[2], "POST", INFER, body, headers)
    assert got == status, answer
    assert message in json.loads(answer)["error"]


def test_valid_edge_values_are_answered(server):
    """Values the spec allows that once reached Python as the wrong type: a binary_data_size
    written as 4.0-style float, and a timeout (microseconds) past what threading can wait.
    Both are valid requests: 200 with the logits, never a 500; the model answers afterwards."""
    text = json.dumps({"inputs": [{"name": "input", "shape": [2, 1, 28, 28], "datatype": "FP32",
                                   "parameters": {"binary_data_size": float(GOOD.nbytes)}}],
                       "parameters": {"timeout": 10**17}}).encode()
    for shape in ((2, 1, 28, 28), (64, 1, 28, 28)):  # the queue and the full-size path
        x = np.zeros(shape, np.float32)
        body = text.replace(b"[2, 1, 28, 28]", json.dumps(list(shape)).encode()).replace(
            str(float(GOOD.nbytes)).encode(), str(float(x.nbytes)).encode())
        headers = {"Inference-Header-Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}
        got, _, answer = call(server[2], "POST", INFER, body + x.tobytes(), headers)
        assert got == 200, answer
        assert json.loads(answer[: int(dict(_).get("Inference-Header-Content-Length", len(answer)))]
                          )["outputs"][0]["shape"] == [shape[0], 10]
    got, _, answer = call(server[2], "POST", INFER, *infer_body())
    assert got == 200, answer


BAD_PREDICT = [  # the HTTP twins of test_serve_errors' Predict cases
    ("unknown model", "/v2/models/nope/predict", b"x", 404, "model 'nope' is not served; available:"),
    ("bad name", "/v2/models/..%2F..%2Fetc%2Fpasswd/predict", b"x", 400, "model name '../../etc/passwd' is not valid"),
    ("unknown version", "/v2/models/lenet5-mnist/versions/7/predict", b"x", 404, "has no version '7'"),
    ("not an image", "/v2/models/lenet5-mnist/predict", b"not an image!!", 400, "images[0]: cannot decode 14 bytes"),
    ("empty body", "/v2/models/lenet5-mnist/predict", b"", 400, "request body: empty"),
    ("negative top_k", "/v2/models/lenet5-mnist/predict?top_k=-1", b"x", 400, "top_k: -1 is negative"),
    ("top_k not a number", "/v2/models/lenet5-mnist/predict?top_k=many", b"x", 400, "top_k: 'many' is not an integer"),
    ("not a classifier", "/v2/models/pair/predict", b"x", 400, "model 'pair' is not an image classifier"),
    ("no route", "/v3/anything", b"x", 404, "no route POST /v3/anything"),
]


@pytest.mark.parametrize("case,path,body,status,message", BAD_PREDICT, ids=[c[0] for c in BAD_PREDICT])
def test_predict_bad_input(server, case, path, body, status, message):
    got, _, answer = call(server[2], "POST", path, body, {"Content-Type": "image/png"})
    assert got == status, answer
    assert message in json.loads(answer)["error"]


def test_same_message_as_grpc(server):
    """One error, both front ends: the gRPC status's details are the HTTP error's text."""
    body, headers = infer_body(name="pixels")
    _, _, answer = call(server[2], "POST", INFER, body, headers)
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{server[1]}")
    with pytest.raises(Exception) as info:
        tensor = tgrpc.InferInput("pixels", [2, 1, 28, 28], "FP32")
        tensor.set_data_from_numpy(GOOD)
        client.infer("lenet5-mnist", [tensor])
    client.close()
    assert json.loads(answer)["error"] in str(info.value)


def test_body_over_the_limit_is_413(repo):
    from serve.config import HttpConfig
    from serve.server import create_server

    from tests.serving import serve_config

    server = create_server(serve_config(repo, http=HttpConfig(port=0, max_body=10_000)))
    server.start()
    try:
        body, headers = infer_body(shape=(4, 1, 28, 28), raw=b"\0" * (4 * 3136))
        status, _, answer = call(server.port("http"), "POST", INFER, body, headers)
        assert status == 413
        assert "exceeds this server's limit of 10,000 bytes" in json.loads(answer)["error"]
    finally:
        server.stop(grace=0.5)


def test_cors_off_by_default_and_on_for_an_allowed_origin(server, repo):
    status, headers, _ = call(server[2], "GET", "/v2", headers={"Origin": "http://other.test"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = call(server[2], "GET", "/v2", headers={"Origin": "http://allowed.test"})
    assert headers.get("Access-Control-Allow-Origin") == "http://allowed.test"
    status, headers, _ = call(server[2], "OPTIONS", INFER, headers={
        "Origin": "http://allowed.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
    from tests.http_serving import running_both as run

    with run(repo) as (_, _, port):  # no --cors-origin: no CORS header for anyone
        _, headers, _ = call(port, "GET", "/v2", headers={"Origin": "http://allowed.test"})
        assert "Access-Control-Allow-Origin" not in headers


def test_deadline_while_queued_is_504(repo):
    with running_both(repo, limits=Limits(max_batch=64, batch_delay_s=0.002)) as (server, _, port):
        slow_down(server, "lenet5-mnist", 0.6)
        x = np.zeros((1, 1, 28, 28), np.float32)
        client = thttp.InferenceServerClient(f"127.0.0.1:{port}", concurrency=2, network_timeout=TIMEOUT)
        try:
            first = client.async_infer("lenet5-mnist", [infer_input_np("input", x)])
            body = json.dumps({"parameters": {"timeout": 50_000}, "inputs": [
                {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": x.ravel().tolist()}]}).encode()
            status, _, answer = call(port, "POST", INFER, body)
            assert status == 504, answer
            assert json.loads(answer)["error"] == "deadline exceeded while queued for inference"
            assert first.get_result(timeout=TIMEOUT).as_numpy("logits").shape == (1, 10)
        finally:
            client.close()


def test_health_follows_grpc_and_drain_refuses_new_requests_finishes_old(repo):
    with running_both(repo, limits=Limits(max_batch=0)) as (server, grpc_port, port):
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT).status == \
                health_pb2.HealthCheckResponse.SERVING
        assert call(port, "GET", "/v2/health/ready")[0] == 200
        slow_down(server, "lenet5-mnist", 1.0)
        body, headers = infer_body()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            in_flight = pool.submit(call, port, "POST", INFER, body, headers)
            import time

            time.sleep(0.3)  # the request is running
            stopping = pool.submit(server.stop, 3.0)
            time.sleep(0.05)  # within the lame-duck period: the listener is still open
            status, _, answer = call(port, "GET", "/v2/health/ready")
            assert status == 503 and json.loads(answer) == {"ready": False}
            status, _, answer = call(port, "POST", INFER, body, headers)
            assert status == 503 and json.loads(answer)["error"] == "the server is shutting down"
            assert call(port, "GET", "/v2/models/lenet5-mnist")[0] == 200  # questions still answered
            status, _, answer = in_flight.result(timeout=TIMEOUT)
            assert status == 200, answer
            stopping.result(timeout=TIMEOUT)
        with pytest.raises(OSError):  # both front ends closed
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=2)


def test_sigterm_drains_both_front_ends_and_exits_0(models_dir):
    import signal

    from bench.server_process import start_server

    process = start_server(models_dir, "--http-port", "0")
    try:
        port = process.http_address().rsplit(":", 1)[1]
        status, _, answer = call(int(port), "GET", "/v2/health/ready")
        assert status == 200 and json.loads(answer) == {"ready": True}
        assert process.stop(signal.SIGTERM, timeout=30) == 0
        assert "stopped" in process.output and "Traceback" not in process.output
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=2)
    finally:
        if process.proc.poll() is None:
            process.proc.kill()


def test_image_bomb_is_413_with_grpcs_message(models_dir):
    from bench.decode_memory import zero_png
    from serve.core.limits import MIB

    bomb = zero_png(4096, 4096, 16)  # 128 MiB of RGBA 16-bit pixels in a small file
    with running_both(models_dir, limits=Limits(max_decode_bytes=64 * MIB)) as (server, _, port):
        status, _, answer = call(port, "POST", "/v2/models/lenet5-mnist/predict", bomb, {"Content-Type": "image/png"})
        assert status == 413
        assert "(4096x4096 RGBA) takes 80.0 MiB, over this server's limit of 64 MiB per request" in \
            json.loads(answer)["error"]
        assert server.plane.decode_budget.used == 0


@pytest.mark.parametrize("strict_readiness", [True, False])
def test_http_readiness_is_grpc_health(models_dir, tmp_path, strict_readiness):
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with running_both(tmp_path, strict_readiness=strict_readiness) as (_, grpc_port, port):
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        serving = health.status == health_pb2.HealthCheckResponse.SERVING
        assert serving is not strict_readiness  # strict: not every model is ready
        status, _, answer = call(port, "GET", "/v2/health/ready")
        assert (status == 200) is serving and json.loads(answer) == {"ready": serving}
        assert call(port, "GET", "/v2/health/live")[0] == 200
        assert call(port, "GET", "/v2/models/lenet5-mnist/ready")[0] == 200
        status, _, answer = call(port, "GET", "/v2/models/broken/ready")
        assert status == 503 and json.loads(answer) == {"name": "broken", "ready": False}


def test_statistics_are_json_numbers_with_every_triton_field(server, http_client):
    """Over HTTP every count and duration is a JSON number (protobuf's JSON mapping makes
    64-bit ones strings, which perf_analyzer reads as garbage), with Triton's fields."""
    http_client.infer("versioned", [infer_input_np("x", np.zeros((2, 1, 8, 8), np.float32))], model_version="2")
    _, _, body = call(server[2], "GET", "/v2/models/versioned/versions/2/stats")
    entry = json.loads(body)["model_stats"][0]
    assert isinstance(entry["inference_count"], int) and entry["inference_count"] >= 2
    assert isinstance(entry["execution_count"], int) and isinstance(entry["last_inference"], int)
    assert set(entry["inference_stats"]) == {"success", "fail", "queue", "compute_input", "compute_infer",
                                             "compute_output", "cache_hit", "cache_miss"}
    for duration in entry["inference_stats"].values():
        assert set(duration) == {"count", "ns"} and all(isinstance(v, int) for v in duration.values())
    batch = entry["batch_stats"][0]
    assert isinstance(batch["batch_size"], int)
    assert {k: type(v["count"]) for k, v in batch.items() if k != "batch_size"} == {
        "compute_input": int, "compute_infer": int, "compute_output": int}


def test_json_infer_passes_nan_and_inf_to_the_model(server):
    """JSON has no NaN: they come as Python's and rapidjson's JSON write them (NaN, Infinity,
    or a number too large for float32), and go to the model as sent, as over gRPC."""
    x = GOOD[:1].copy()
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    body, headers = infer_body(shape=x.shape, raw=None, data=x.ravel().tolist())
    assert b"NaN" in body and b"Infinity" in body
    status, _, answer = call(server[2], "POST", INFER, body, headers)
    assert status == 200, answer
    logits = np.array(json.loads(answer)["outputs"][0]["data"], np.float32).reshape(1, 10)
    expected = ort.InferenceSession(str(server[0].plane.registry.models["lenet5-mnist"].path),
                                    providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_array_equal(np.isnan(logits), np.isnan(expected))


def test_json_bodies_parse_with_the_threads_parser_and_without_it():
    """A handler thread reuses one simdjson parser; while views of its last document still
    live (a traceback may hold one) a new parser takes over, and a body above the reuse
    limit gets its own: each gives the same tensor."""
    from serve.http import tensors

    x = np.arange(6, dtype=np.float32) / 7

    def body(values):
        return json.dumps({"inputs": [{"name": "input", "shape": [len(values)], "datatype": "FP32",
                                       "data": values}]}).encode()

    request, arrays = tensors.parse_inference(body(x.tolist()))
    held = arrays[0]  # a live view of the thread parser's document
    for _ in range(2):
        _, again = tensors.parse_inference(body(x.tolist()))
        values = tensors.json_values(again[0], "FP32", "data")
        assert values.dtype == np.float64 and values.shape == (6,)
        np.testing.assert_allclose(values, x, rtol=0, atol=1e-7)
    large = x.tolist() * (tensors.REUSED_PARSER_LIMIT // 40)
    _, big = tensors.parse_inference(body(large))
    assert len(body(large)) > tensors.REUSED_PARSER_LIMIT
    assert tensors.json_values(big[0], "FP32", "data").shape == (len(large),)
    assert tensors.json_values(held, "FP32", "data").shape == (6,)  # the first view still reads
