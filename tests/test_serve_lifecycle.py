"""Health, reflection, draining, shutdown by signal, devices and the lean import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serve.core import Limits
from serve.core.device import PROVIDERS, DeviceError, Provider, make_session
from serve.gen import predictor_pb2 as pb
from serve.core.registry import ModelLoadError
from serve.server import create_server
from bench.server_process import start_server
from tests.blocked_imports import ROOT, run_python
from tests.serving import TIMEOUT, predictor_stub, running_server, serve_config, slow_down

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_status(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT).status


def test_health_overall_per_model_and_per_service(models_dir):
    with running_server(models_dir) as (_, port):
        assert health_status(port) == SERVING
        assert health_status(port, "lenet5-mnist") == SERVING
        assert health_status(port, "zoo.v1.Predictor") == SERVING
        assert health_status(port, "inference.GRPCInferenceService") == SERVING
        with pytest.raises(grpc.RpcError) as info:
            health_status(port, "lenet9")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_every_service(models_dir):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with running_server(models_dir) as (_, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            db = ProtoReflectionDescriptorDatabase(channel)
            services = set(db.get_services())
            assert {"zoo.v1.Predictor", "inference.GRPCInferenceService", "grpc.health.v1.Health",
                    "grpc.reflection.v1alpha.ServerReflection"} <= services
            assert db.FindFileContainingSymbol("zoo.v1.PredictRequest").package == "zoo.v1"


def test_drain_finishes_in_flight_requests_and_turns_health_off(models_dir, mnist_batch):
    _, x, _ = mnist_batch
    server = create_server(serve_config(models_dir, limits=Limits(max_batch=0)))
    port = server.port("grpc")
    slow_down(server, "lenet5-mnist", 1.0)
    server.start()
    results, statuses = [], []
    request = pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(shape=[4, 1, 28, 28], dtype=pb.DTYPE_FLOAT32,
                                                                        data=x[:4].tobytes()))

    def call():
        with predictor_stub(port) as stub:
            results.append(stub.Predict(request, timeout=TIMEOUT))

    clients = [threading.Thread(target=call) for _ in range(3)]
    for c in clients:
        c.start()
    time.sleep(0.3)  # the three requests are in flight
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 5.0})
    stopper.start()
    time.sleep(0.1)
    statuses.append(server.front_ends["grpc"].health._server_status[""])  # noqa: SLF001  (the servicer's own table)
    statuses.append(server.plane.readiness.server_ready())  # what ServerReady answers
    for c in clients + [stopper]:
        c.join(TIMEOUT)
    assert statuses == [NOT_SERVING, False]
    assert len(results) == 3 and all(len(r.predictions) == 4 for r in results)


def test_deadline_frees_the_work_and_server_stays_healthy(models_dir, mnist_batch):
    _, x, _ = mnist_batch
    with running_server(models_dir, limits=Limits(max_batch=8, batch_delay_s=0.001)) as (server, port):
        slow_down(server, "lenet5-mnist", 0.5)
        request = pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(
            shape=[64, 1, 28, 28], dtype=pb.DTYPE_FLOAT32, data=x.tobytes()))  # 8 runs of 0.5 s
        with predictor_stub(port) as stub:
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(request, timeout=0.8)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            time.sleep(1.0)
            stats = server.plane.registry.models["lenet5-mnist"].stats
            assert stats.execution_count <= 3  # the rest of the request never ran
            assert time.monotonic() - start < 5
        assert health_status(port) == SERVING


def test_broken_model_is_reported_not_ready(models_dir, tmp_path):
    for f in models_dir.glob("*.onnx"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "broken.onnx").write_bytes(b"not a model at all")
    with running_server(tmp_path) as (server, port):
        with predictor_stub(port) as stub:
            models = {m.name: m for m in stub.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT).models}
            assert models["lenet5-mnist"].ready
            assert not models["broken"].ready and "broken.onnx: cannot load as an ONNX model" in models["broken"].error
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(pb.PredictRequest(model="broken", tensor=pb.Tensor()), timeout=TIMEOUT)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert health_status(port, "broken") == NOT_SERVING
        assert health_status(port) == NOT_SERVING  # strict readiness: not every model is ready
    with pytest.raises(ModelLoadError, match="broken.onnx"):
        create_server(serve_config(tmp_path, strict=True))


def test_cuda_fails_closed_on_a_machine_without_it(models_dir):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the fail-closed path cannot be shown here")
    data = (models_dir / "lenet5-mnist.onnx").read_bytes()
    with pytest.raises(DeviceError, match="--device cuda: .*no CUDA execution provider"):
        make_session(data, "cuda")
    assert make_session(data, "auto").get_providers()[0] == "CPUExecutionProvider"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_and_exits_zero(models_dir, mnist_batch, sig):
    _, x, _ = mnist_batch
    server = start_server(models_dir)
    assert "provider CPUExecutionProvider" in server.output
    port = int(server.address.rsplit(":", 1)[1])
    with predictor_stub(port) as stub:
        request = pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(shape=[64, 1, 28, 28],
                                                                            dtype=pb.DTYPE_FLOAT32, data=x.tobytes()))
        assert len(stub.Predict(request, timeout=TIMEOUT).predictions) == 64
    code = server.stop(sig, timeout=30)
    assert code == 0, server.output
    assert "draining" in server.output and "stopped" in server.output


# The main thread blocks SIGTERM, so it is never woken by it: as a main thread whose signal
# came in the gap before it blocked. Another thread takes the signal. (With the old Python
# handler setting an Event, this waits for ever.)
SIGNAL_ELSEWHERE = """
import signal, threading, time
from serve.__main__ import catch_shutdown_signals, wait_for_shutdown_signal
read_end = catch_shutdown_signals()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started from now on inherit it


def take_the_signal():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    time.sleep(0.5)  # most likely the main thread is blocked in the wait by then; either order must work
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)


threading.Thread(target=take_the_signal).start()
print(wait_for_shutdown_signal(read_end))
"""


def test_a_signal_the_main_thread_did_not_see_still_stops_the_server():
    """A signal caught while the main thread was not yet blocked waiting for one still ends
    the wait (with a Python handler setting an Event, it was lost: the server ignored SIGTERM)."""
    result = subprocess.run([sys.executable, "-c", SIGNAL_ELSEWHERE], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "SIGTERM"), result.stderr


def test_cli_device_cuda_refuses_to_start(models_dir):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    result = subprocess.run([sys.executable, "-m", "serve", "--models", str(models_dir), "--device", "cuda"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "error: --device cuda" in result.stderr and "install onnxruntime-gpu" in result.stderr


def test_cli_device_auto_says_it_fell_back(models_dir):
    server = start_server(models_dir, "--device", "auto")
    assert server.stop() == 0
    assert "CUDA is not usable here" in server.output or "CUDAExecutionProvider" in server.output


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_cli_models_not_a_models_directory(tmp_path, kind):
    target = tmp_path / "models"
    expected = {"missing": f"error: models directory {target} does not exist",
                "empty": f"error: no models in {target}: expected <name>.onnx files or <name>/<version>/model.onnx "
                         "folders",
                "file": f"error: --models {target} is a file, not a directory of models"}[kind]
    if kind == "empty":
        target.mkdir()
    elif kind == "file":
        target.write_bytes(b"not a directory")
    result = subprocess.run([sys.executable, "-m", "serve", "--models", str(target)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [expected]


def test_serve_imports_no_torch():
    """Nothing of torch, onnx or export; of zoo only its NumPy modules shared with serve
    (normalization, preprocessing), never the models or the training."""
    code = ("import sys, serve.__main__, serve.grpc.server, serve.client, serve.server, serve.core.dataplane; "
            "bad = [m for m in ('torch', 'export', 'onnx', 'zoo.models', 'zoo.training', 'zoo.weights') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ})


def test_serving_core_runs_a_data_plane_call_without_grpc(models_dir):
    """serve.core with grpc, aiohttp and tritonclient unimportable (as if not installed): it
    loads a model, answers ModelInfer, Predict, ModelConfig and the statistics, and no module
    of a front end was loaded."""
    code = f"""
import numpy as np
from pathlib import Path
from serve.core import DataPlane, Limits
from serve.core.metrics import Metrics
from serve.core.records import InferRequest, InputTensor, PredictRequest
from serve.core.registry import ModelRegistry
plane = DataPlane(ModelRegistry.load_dir(Path({str(models_dir)!r}), "cpu"), Limits(), Metrics())
x = np.zeros((2, 1, 28, 28), np.float32)
answer = plane.infer(InferRequest("lenet5-mnist", inputs=[InputTensor("input", "FP32", x.shape, "inputs[0]",
                                                                      data=x.tobytes())]))
assert answer.outputs[0].shape == (2, 10), answer
png = Path({str(ROOT / "serve" / "examples" / "digit-7-0.png")!r}).read_bytes()
assert plane.predict(PredictRequest("lenet5-mnist", images=[png])).predictions[0].ranked.top_k[0].label == "7"
assert plane.model_config("lenet5-mnist").max_batch_size == Limits().max_batch
assert plane.statistics("lenet5-mnist")[0].inference_stats["success"].count == 2
plane.close()
loaded = [m for m in sys.modules if m.startswith(("grpc", "aiohttp", "tritonclient", "serve.grpc", "serve.http"))]
assert not loaded, loaded
print("ok")
"""
    result = run_python(code, ("grpc", "aiohttp", "tritonclient", "torch", "onnx"))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_client_cli_prints_labels_and_scores(models_dir, capsys):
    from pathlib import Path

    from serve.client import main

    examples = sorted((Path(__file__).parent.parent / "serve" / "examples").glob("digit-*.png"))
    with running_server(models_dir) as (_, port):
        assert main(["predict", "lenet5", *map(str, examples), "--server", f"127.0.0.1:{port}", "--top-k", "2"]) == 0
        out = capsys.readouterr().out
        assert main(["predict", "lenet9", str(examples[0]), "--server", f"127.0.0.1:{port}"]) == 2
    assert out.splitlines()[0] == "lenet5-mnist v1 on CPUExecutionProvider"
    for path in examples:
        digit = path.name.split("-")[1]
        block = out.split(str(path))[1].splitlines()
        assert block[1].split()[:2] == ["#", "label"]  # the header
        assert block[2].split()[:2] == [digit, digit]  # best class first: index, label
    assert "not served" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_client_wait_before_or_after_the_subcommand(where):
    import socket
    from pathlib import Path

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    image = str(Path(__file__).parent.parent / "serve" / "examples" / "digit-7-0.png")
    options = ["--wait", "0.3", "--server", address]
    argv = options + ["predict", "lenet5", image] if where == "before" else ["predict", "lenet5", image] + options
    result = subprocess.run([sys.executable, "-m", "serve.client", *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: no server answered at {address} within 0.3 s; start one with "
                                     "`python -m serve`")


ACCELERATORS = [p for p in PROVIDERS.values() if p.accelerator]


@pytest.mark.parametrize("provider", ACCELERATORS, ids=[p.device for p in ACCELERATORS])
def test_every_accelerator_row_fails_closed_or_really_loads(models_dir, provider):
    """Each accelerator of the table, as this onnxruntime has it: asked for by name, either
    a session that really runs on it, or a DeviceError saying how to get it; auto, either
    way, a session on a provider that really loaded."""
    data = (models_dir / "lenet5-mnist.onnx").read_bytes()
    if provider.name in ort.get_available_providers():
        assert make_session(data, provider.device).get_providers()[0] == provider.name
    else:
        with pytest.raises(DeviceError, match=f"--device {provider.device}: .* has no "
                                              f"{provider.device.upper()} execution provider; {provider.install}"):
            make_session(data, provider.device)
    assert make_session(data, "auto").get_providers()[0] in ort.get_available_providers()


def test_a_new_provider_is_one_row(models_dir, monkeypatch, caplog):
    """A provider this onnxruntime lacks (OpenVINO's, here), added as one row: refused by
    name with its install hint, skipped by auto (said in the log), the CPU used."""
    row = Provider("openvino", "OpenVINOExecutionProvider", "KIND_CPU", "pip install onnxruntime-openvino")
    monkeypatch.setitem(PROVIDERS, row.device, row)
    data = (models_dir / "lenet5-mnist.onnx").read_bytes()
    with pytest.raises(DeviceError, match="--device openvino: .*has no OPENVINO execution provider; "
                                          "pip install onnxruntime-openvino, or use --device cpu"):
        make_session(data, "openvino")
    with caplog.at_level("WARNING", logger="serve"):
        assert make_session(data, "auto").get_providers()[0] == "CPUExecutionProvider"
    assert "OPENVINO is not usable here" in caplog.text
