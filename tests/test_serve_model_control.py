"""Model control as Triton's: poll (the directory re-read; new versions load, warm up and take
over; a corrupt or half-copied file never replaces what serves) and explicit (load and
unload by name, tritonclient's load_model / unload_model unchanged), with 8 clients
sending all the while: not one request fails, but NOT_FOUND for a model after its unload."""

from __future__ import annotations

import shutil
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.http as thttp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from serve.config import HttpConfig
from serve.server import create_server
from tests.own_models import linear_classifier
from tests.serving import TIMEOUT, serve_config, wait_until

X = np.random.default_rng(7).standard_normal((2, 1, 8, 8)).astype(np.float32)
CLIENTS = 8
RELOAD_S = 30.0  # how long a poll or an explicit load may take to show, under load
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def expected(path) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]


def start(models_dir, mode: str, poll_secs: float = 3600.0, load=(), http: bool = False, **kw):
    config = serve_config(models_dir, http=HttpConfig(port=0) if http else None, **kw)
    config = replace(config, models=replace(config.models, control_mode=mode, poll_secs=poll_secs,
                                            load_models=tuple(load)))
    server = create_server(config)
    server.start()
    return server


class Clients:
    """CLIENTS threads sending ModelInfer for `model` without pause (bounded by count and
    time), recording each answer's version and outputs, or its error code."""

    def __init__(self, port: int, model: str, seconds: float = 60.0, per_client: int = 20_000) -> None:
        self.answers: list[tuple[str, np.ndarray]] = []
        self.errors: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(port, model, seconds, per_client))
                        for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def _send(self, port, model, seconds, per_client):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = triton.InferInput("x", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X)
        end = time.monotonic() + seconds
        for _ in range(per_client):
            if self._stop.is_set() or time.monotonic() > end:
                break
            try:
                result = client.infer(model, [tensor], client_timeout=TIMEOUT)
                answer = (result.get_response().model_version, result.as_numpy("y"))
                with self._lock:
                    self.answers.append(answer)
            except InferenceServerException as e:
                with self._lock:
                    self.errors.append((e.status(), e.message()))
        client.close()

    def versions(self) -> set[str]:
        with self._lock:
            return {v for v, _ in self.answers}

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(TIMEOUT * 3)


def index(server) -> dict[tuple[str, str], tuple[str, str]]:
    return {(e.name, e.version): (e.state, e.reason) for e in server.plane.repository_index()}


def test_poll_replaces_a_version_under_load_and_keeps_serving_through_a_corrupt_one(tmp_path):
    v1, _ = linear_classifier(tmp_path / "digits" / "1" / "model.onnx", batch="N", seed=1)
    server = start(tmp_path, "poll", poll_secs=0.2)
    try:
        clients = Clients(server.port("grpc"), "digits")
        wait_until(lambda: len(clients.answers) > 50, RELOAD_S, "answers from version 1")
        staging = tmp_path / "staging.onnx"
        linear_classifier(staging, batch="N", seed=2)
        (tmp_path / "digits" / "2").mkdir()
        shutil.move(staging, tmp_path / "digits" / "2" / "model.onnx")  # as a deploy tool would: complete, then moved
        wait_until(lambda: "2" in clients.versions(), RELOAD_S, "version 2 taking requests")
        count = len(clients.answers)
        (tmp_path / "digits" / "3").mkdir()
        (tmp_path / "digits" / "3" / "model.onnx").write_bytes(b"not a model, half a copy perhaps")
        wait_until(lambda: ("digits", "3") in index(server), RELOAD_S, "the corrupt version in the index")
        wait_until(lambda: len(clients.answers) > count + 200, RELOAD_S, "answers after the corrupt version")
        clients.stop()
    finally:
        server.stop(grace=2.0)
    assert not clients.errors, clients.errors[:5]
    state, reason = index_after = (index(server)[("digits", "3")])
    assert state == "UNAVAILABLE" and "cannot load as an ONNX model" in reason, index_after
    by_version = {"1": expected(v1), "2": expected(tmp_path / "digits" / "2" / "model.onnx")}
    seen = [v for v, _ in clients.answers]
    assert seen.index("2") > 0 and "1" not in seen[seen.index("2") + CLIENTS * 2:]  # 2 took over, 1 stopped
    for version, y in clients.answers:
        np.testing.assert_allclose(y, by_version[version], rtol=0, atol=1e-5)
    assert set(seen[-100:]) == {"2"}  # the corrupt 3 never served


def test_poll_never_loads_a_file_being_copied(tmp_path, models_dir):
    """The poll loads a version only once its files have not changed for one poll; driven
    by hand here, one poll at a time, so the copy's progress is exact."""
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path)
    server = start(tmp_path, "poll")  # no poll of its own within the test: control.poll() by hand
    control = server.plane.control
    try:
        data = (models_dir / "lenet5-fashion-mnist.onnx").read_bytes()
        target = tmp_path / "fashion.onnx"
        for part in (1, 2, 3):
            with target.open("ab") as f:
                f.write(data[(part - 1) * len(data) // 4: part * len(data) // 4])
            control.poll()
            assert "fashion" not in server.plane.registry.models and ("fashion", "") not in index(server)
        with target.open("ab") as f:
            f.write(data[3 * len(data) // 4:])
        control.poll()  # changed again since the last poll: still waits
        assert "fashion" not in server.plane.registry.models
        control.poll()  # unchanged for one poll: loaded, warmed up, served
        assert server.plane.registry.models["fashion"].ready
        assert "warmed up in" in server.plane.registry.models["fashion"].warmup
        target.unlink()
        control.poll()
        assert "fashion" not in server.plane.registry.models  # removed: unloaded
    finally:
        server.stop(grace=1.0)


def health(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=TIMEOUT).status


def test_explicit_load_and_unload_under_load_with_tritonclient(tmp_path):
    path, _ = linear_classifier(tmp_path / "digits" / "1" / "model.onnx", batch="N", seed=3)
    linear_classifier(tmp_path / "other" / "1" / "model.onnx", batch="N", seed=4)
    server = start(tmp_path, "explicit", load=["digits"], http=True)
    port, http_port = server.port("grpc"), server.port("http")
    grpc_client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    http_client = thttp.InferenceServerClient(f"127.0.0.1:{http_port}", network_timeout=TIMEOUT)
    try:
        assert set(server.plane.registry.models) == {"digits"}  # only what --load-model named
        assert {m["name"]: m.get("state") for m in http_client.get_model_repository_index()} == {
            "digits": "READY", "other": None}
        clients = Clients(port, "digits")
        wait_until(lambda: len(clients.answers) > 50, RELOAD_S, "answers before the unload")
        grpc_client.unload_model("digits", client_timeout=TIMEOUT)
        unloaded_at = len(clients.answers)
        assert health(port, "digits") == NOT_SERVING and not grpc_client.is_model_ready("digits")
        wait_until(lambda: len(clients.errors) > 20, RELOAD_S, "NOT_FOUND after the unload")
        http_client.load_model("digits")
        assert health(port, "digits") == SERVING and http_client.is_model_ready("digits")
        wait_until(lambda: len(clients.answers) > unloaded_at + 100, RELOAD_S, "answers after the load")
        clients.stop()
        http_client.load_model("other")
        assert grpc_client.is_model_ready("other")
        assert {m["name"]: m["state"] for m in http_client.get_model_repository_index()} == {
            "digits": "READY", "other": "READY"}
        grpc_client.unload_model("other", client_timeout=TIMEOUT)
        entry = next(m for m in http_client.get_model_repository_index() if m["name"] == "other")
        assert entry == {"name": "other", "state": "UNAVAILABLE", "reason": "unloaded"}
        with pytest.raises(InferenceServerException) as info:
            http_client.load_model("nope")
        assert "no model 'nope' in the repository" in info.value.message()
    finally:
        grpc_client.close()
        http_client.close()
        server.stop(grace=2.0)
    codes = {code for code, _ in clients.errors}
    assert codes == {"StatusCode.NOT_FOUND"}, clients.errors[:5]
    assert all("model 'digits' is not served" in message for _, message in clients.errors)
    want = expected(path)
    for _, y in clients.answers:
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_load_and_unload_are_refused_naming_the_mode(models_dir, mode):
    server = start(models_dir, mode, http=True)
    try:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port('grpc')}")
        with pytest.raises(InferenceServerException) as info:
            client.unload_model("lenet5-mnist", client_timeout=TIMEOUT)
        client.close()
        assert info.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert f"not allowed with --model-control-mode {mode}" in info.value.message()
        request = urllib.request.Request(f"http://127.0.0.1:{server.port('http')}/v2/repository/models/"
                                         "lenet5-mnist/load", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as http_info:
            urllib.request.urlopen(request, timeout=TIMEOUT)
        assert http_info.value.code == 400
        assert server.plane.registry.models["lenet5-mnist"].ready
    finally:
        server.stop(grace=1.0)


def test_a_load_the_device_cannot_run_is_refused_not_internal(tmp_path, monkeypatch):
    """A load request whose session the device cannot create (CUDA gone, say) is refused
    with its reason over both front ends, as a broken file is; never INTERNAL."""
    import serve.core.control as control
    from serve.core.device import DeviceError

    linear_classifier(tmp_path / "digits.onnx", batch="N", seed=4)
    server = start(tmp_path, "explicit", http=True)
    try:
        def no_device(*args, **kwargs):
            raise DeviceError("CUDAExecutionProvider did not load")

        monkeypatch.setattr(control, "load_model", no_device)
        with pytest.raises(InferenceServerException) as refused:
            triton.InferenceServerClient(f"127.0.0.1:{server.port('grpc')}").load_model("digits")
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "CUDAExecutionProvider did not load" in refused.value.message()
        with pytest.raises(InferenceServerException) as over_http:
            thttp.InferenceServerClient(f"127.0.0.1:{server.port('http')}").load_model("digits")
        assert over_http.value.status() == "400" and "cannot be loaded" in over_http.value.message()
    finally:
        server.stop(grace=1.0)


def test_explicit_with_nothing_loaded_is_healthy_as_it_is_ready(tmp_path):
    """Asked to serve no model yet, the server is ready (ServerReady, HTTP ready) and its gRPC
    health says so for the server and both services, as soon as it starts."""
    linear_classifier(tmp_path / "digits.onnx", batch="N", seed=5)
    server = start(tmp_path, "explicit", http=True)
    try:
        port = server.port("grpc")
        assert triton.InferenceServerClient(f"127.0.0.1:{port}").is_server_ready()
        for service in ("", "zoo.v1.Predictor", "inference.GRPCInferenceService"):
            assert health(port, service) == SERVING, service
    finally:
        server.stop(grace=1.0)
