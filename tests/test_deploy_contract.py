"""The runtime contract: the KServe ServingRuntime's and the Deployment's container, run
here with its exact command and args, answers as the cluster expects.

/mnt/models is a temporary folder laid out as the cluster leaves it: KServe's storage
initializer copies a single-file storageUri to one model.onnx, a folder storageUri as it is
(a Triton repository); a ConfigMap volume holds its files as symlinks into a hidden
timestamped folder. What must change to run here, and only that (tests/deploy_manifests.py,
launch()): {{.Name}} is the InferenceService's name, env and $(VAR) are expanded as kubelet
does, `python` is this interpreter, /mnt/models the folder, and each declared port a free
one (this machine is shared: 8080 may be anyone's). Then the readinessProbe's path and port
must answer 200, the liveness probe's too, and tritonclient.http and tritonclient.grpc
infers for that name on the declared HTTP and gRPC ports must match onnxruntime's logits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.deploy_manifests import REPO, launch, manifest, metrics_port, only_container

READY_WITHIN_S = 90  # a loaded 2-core machine; the server is ready in about 3 s when idle
TIMEOUT = 10.0


MODELS = ("lenet5-mnist", "lenet5-fashion-mnist")


def single_file(folder: Path, models_dir: Path, model: str) -> Path:
    """A single-file storageUri: the storage initializer leaves one model.onnx. Returns the
    file that `model` is served from."""
    shutil.copy(models_dir / "lenet5-mnist.onnx", folder / "model.onnx")
    return folder / "model.onnx"


def triton_repository(folder: Path, models_dir: Path, model: str) -> Path:
    """A folder storageUri holding a Triton repository (as `export --triton-repo` writes it)."""
    import onnx

    from export.triton import write_model_repository

    for name in MODELS:
        write_model_repository(folder, name, onnx.load(models_dir / f"{name}.onnx"))
    return folder / model / "1" / "model.onnx"


def model_folder(folder: Path, models_dir: Path, model: str) -> Path:
    """A folder storageUri holding one Triton model folder: config.pbtxt, 1/model.onnx."""
    import onnx

    from export.triton import write_model_repository

    written = write_model_repository(folder / "repo", "lenet5-mnist", onnx.load(models_dir / "lenet5-mnist.onnx"))
    for part in sorted(written.iterdir()):
        part.rename(folder / part.name)
    shutil.rmtree(folder / "repo")
    return folder / "1" / "model.onnx"


def configmap_volume(folder: Path, models_dir: Path, model: str) -> Path:
    """What kubelet makes of `kubectl create configmap --from-file=...`: each key a symlink
    through ..data to a hidden timestamped folder (swapped atomically on update)."""
    stamped = folder / "..2026_01_01_00_00_00.000000001"
    stamped.mkdir()
    for name in MODELS:
        shutil.copy(models_dir / f"{name}.onnx", stamped / f"{name}.onnx")
        (folder / f"{name}.onnx").symlink_to(Path("..data") / f"{name}.onnx")
    (folder / "..data").symlink_to(stamped.name)
    return folder / f"{model}.onnx"


# (manifest kind, its folder, the /mnt/models layout, the InferenceService name for
# {{.Name}} (None: the manifest has none), the model to ask for)
CASES = [
    pytest.param("ServingRuntime", "kserve", single_file, "digits", "digits", id="kserve-single-file"),
    pytest.param("ServingRuntime", "kserve", model_folder, "digits", "digits", id="kserve-model-folder"),
    pytest.param("ServingRuntime", "kserve", triton_repository, "lenet5-fashion-mnist", "lenet5-fashion-mnist",
                 id="kserve-triton-repository"),
    pytest.param("Deployment", "kubernetes", configmap_volume, None, "lenet5-mnist", id="kubernetes-configmap"),
]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0  # not listening yet


def wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    start = time.monotonic()
    while time.monotonic() - start < READY_WITHIN_S:
        if http_status(url) == 200:
            return
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode} before {url} was 200:\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"{url} was not 200 within {READY_WITHIN_S} s:\n{log.read_text()}")


def reference_logits(model_file: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def infer_both_protocols(http_port: int, grpc_port: int, name: str, x: np.ndarray):
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    out = {}
    client = triton_http.InferenceServerClient(f"127.0.0.1:{http_port}", connection_timeout=TIMEOUT,
                                               network_timeout=TIMEOUT)
    try:
        tensor = triton_http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        out["http"] = client.infer(name, [tensor]).as_numpy("logits")
    finally:
        client.close()
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        tensor = triton_grpc.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        out["grpc"] = client.infer(name, [tensor], client_timeout=TIMEOUT).as_numpy("logits")
        assert client.is_server_ready(client_timeout=TIMEOUT)
    finally:
        client.close()
    return out


@pytest.mark.parametrize("kind, directory, layout, name, model", CASES)
def test_container_runs_as_declared(kind, directory, layout, name, model, models_dir, mnist_batch, tmp_path):
    doc = manifest(kind, directory)
    container = only_container(doc)
    mnt = tmp_path / "mnt-models"
    mnt.mkdir()
    model_file = layout(mnt, models_dir, model)
    run = launch(doc, name=name, mounts={"/mnt/models": mnt}, python=sys.executable)
    argv = run.argv  # --workers as the manifest says: the Deployment's CPU limit of 2 is two worker processes
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    http_port = run.port(readiness["port"])
    grpc_port = run.port("h2c" if "h2c" in run.named_ports else "grpc")
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **run.env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{http_port}{readiness['path']}", log)
        assert http_status(f"http://127.0.0.1:{run.port(liveness['port'])}{liveness['path']}") == 200
        assert http_status(f"http://127.0.0.1:{http_port}/v2/models/{model}/ready") == 200

        _, x, _ = mnist_batch
        x = np.ascontiguousarray(x[:4].reshape(4, 1, 28, 28), dtype=np.float32)
        expected = reference_logits(model_file, x)
        for protocol, logits in infer_both_protocols(http_port, grpc_port, model, x).items():
            assert logits.shape == expected.shape and logits.dtype == np.float32, protocol
            np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5, err_msg=protocol)

        with urllib.request.urlopen(f"http://127.0.0.1:{run.port(metrics_port(doc))}/metrics", timeout=TIMEOUT) as r:
            assert b"zoo_requests_total" in r.read()
        workers = int(argv[argv.index("--workers") + 1])
        assert workers == 1 or f"{workers} workers (pids" in log.read_text()  # processes, as many as CPUs
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    assert code == 0, log.read_text()


def test_a_name_the_repository_lacks_stops_the_start_in_one_line(models_dir, tmp_path):
    """An InferenceService whose name is none of its Triton repository's models: the pod
    must fail at once with a line saying which models there are (CrashLoopBackOff with a
    reason), not stay unready for ever."""
    mnt = tmp_path / "mnt-models"
    mnt.mkdir()
    triton_repository(mnt, models_dir, MODELS[0])
    run = launch(manifest("ServingRuntime", "kserve"), name="digits", mounts={"/mnt/models": mnt},
                 python=sys.executable)
    result = subprocess.run(run.argv, cwd=REPO, env={**os.environ, **run.env},
                            capture_output=True, text=True, timeout=READY_WITHIN_S)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert "digits" in line and all(name in line for name in MODELS), result.stderr
