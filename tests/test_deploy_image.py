"""The container image, built for real with deploy/build-image.sh (buildah; minutes), its
server started from the image with `buildah run --isolation chroot` on the host network
(podman run cannot set its rlimits on this machine) and asked over tritonclient.http.
Optional: ZOO_TEST_IMAGE=1. Prints the image's size, build time and start-up time."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.deploy_manifests import DEPLOY, REPO, with_ports, free_port

TAG = "localhost/cnn-zoo-serve:test"
PORTS = (8080, 8081, 8082)  # the image's HTTP, gRPC and metrics ports (EXPOSE)
READY_WITHIN_S = 120

def why_no_image_test() -> str | None:
    if os.environ.get("ZOO_TEST_IMAGE") != "1":
        return "builds the container image with buildah (2 to 5 minutes, as root); set ZOO_TEST_IMAGE=1"
    if not (shutil.which("buildah") and shutil.which("debootstrap")):
        return "ZOO_TEST_IMAGE=1, but buildah and debootstrap are not installed (Debian: apt-get install buildah debootstrap)"
    if os.geteuid() != 0:
        return "ZOO_TEST_IMAGE=1, but deploy/build-image.sh runs debootstrap and buildah as root"
    return None


WHY_NOT = why_no_image_test()
needs_image = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


def test_build_script_refuses_an_unknown_option_in_one_line():
    result = subprocess.run(["bash", str(DEPLOY / "build-image.sh"), "--tga", "x"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: unknown option --tga"
    assert "deploy/build-image.sh [--tag NAME]" in result.stderr


def build_stage_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context in the Containerfile's
    build stage."""
    copies, stage = [], None
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            stage = words[-1] if "AS" in words else None
        elif words[:1] == ["COPY"] and stage == "build" and not any(w.startswith("--from") for w in words):
            copies.append((words[1:-1], words[-1]))
    return copies


def copy_as_the_build_does(context: Path) -> None:
    """The build stage's /src, made here with COPY's rules: a folder's contents into the
    destination, a file into it by name; only what .dockerignore lets into the context."""
    allowed = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for sources, destination in build_stage_copies():
        for source in sources:
            name = source.rstrip("/")
            assert any(name == a or name.startswith(a + "/") for a in allowed), \
                f"the Containerfile copies {source}, which .dockerignore keeps out of the build context"
            target = context / destination
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / name, target / Path(name).name)


def test_the_image_build_copies_every_module_the_server_imports(tmp_path):
    """Runs by default (the image build does not): the server's entry points, imported from
    only what the build stage copies, find every module of this repository they need there."""
    context = tmp_path / "src"
    copy_as_the_build_does(context)
    code = ("import json, sys\n"
            "import serve.__main__, serve.http.app, serve.client, serve.supervisor, serve.server\n"
            "print(json.dumps({n: getattr(m, '__file__', None) for n, m in sys.modules.items()\n"
            "                  if n.split('.')[0] in ('serve', 'zoo', 'export')}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=context, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    modules = json.loads(result.stdout.splitlines()[-1])
    assert "zoo.preprocess" in modules and "serve.core.dataplane" in modules
    outside = {name: path for name, path in modules.items() if path and not Path(path).is_relative_to(context)}
    assert not outside, f"imported from the repository, not from what the image copies: {outside}"
    assert not [name for name in modules if name.split(".")[0] == "export"]


def buildah(*args: str, timeout: float = 120) -> str:
    return subprocess.run(["buildah", *args], check=True, capture_output=True, text=True, timeout=timeout).stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """Build the image; yields its figures (the base is reused when already built: the
    build-time figure of a first build includes debootstrap, as the script prints it)."""
    log = tmp_path_factory.mktemp("image") / "build.log"
    start = time.monotonic()
    with open(log, "w") as out:
        result = subprocess.run(["bash", str(DEPLOY / "build-image.sh"), "--tag", TAG], stdout=out,
                                stderr=subprocess.STDOUT, timeout=1800)
    seconds = time.monotonic() - start
    assert result.returncode == 0, log.read_text()[-5000:]
    config = json.loads(buildah("inspect", "--type", "image", TAG))["Docker"]["config"]
    (listed,) = json.loads(buildah("images", "--json", TAG))
    archive = tmp_path_factory.mktemp("oci")
    buildah("push", TAG, f"oci:{archive}", timeout=600)  # gzip-compressed layers, as a registry stores them
    compressed = sum(p.stat().st_size for p in (archive / "blobs").rglob("*") if p.is_file())
    yield {"config": config, "size": listed["size"], "compressed_mb": compressed / 1e6, "build_s": seconds,
           "base_built": "debootstrap --variant=minbase" in log.read_text().split("== image", 1)[0]}


def run_in_image(*command: str, volumes: dict[Path, str] = {}, **popen) -> subprocess.Popen:
    ctr = buildah("from", TAG).strip()
    mounts = [arg for host, inside in volumes.items() for arg in ("-v", f"{host}:{inside}:ro")]
    proc = subprocess.Popen(["buildah", "run", "--isolation", "chroot", "--network", "host", *mounts, ctr, "--",
                             *command], start_new_session=True, **popen)
    proc.container = ctr
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    subprocess.run(["buildah", "rm", proc.container], capture_output=True, timeout=60)


def in_image(*command: str) -> subprocess.CompletedProcess:
    proc = run_in_image(*command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        stop(proc)
    return subprocess.CompletedProcess(command, proc.returncode, out)


@needs_image
def test_image_is_lean_and_unprivileged(image):
    config = image["config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["python", "-m", "serve"]
    assert {f"{p}/tcp" for p in PORTS} <= set(config["ExposedPorts"])
    assert "/v2/health/ready" in " ".join(config["Healthcheck"]["Test"])
    result = in_image("python", "-c", "import os, importlib.util as u; print(os.getuid(), "
                      "[m for m in ('torch', 'onnx', 'onnxscript') if u.find_spec(m)], os.path.exists('/run/secrets'))")
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "1000 [] False", result.stdout


@needs_image
def test_server_from_the_image_answers_tritonclient_http(image, models_dir, mnist_batch, tmp_path):
    import onnxruntime as ort
    import tritonclient.http as triton_http

    config = image["config"]
    ports = {p: free_port() for p in PORTS}
    argv = [with_ports(a, ports) for a in config["Entrypoint"] + config["Cmd"]]  # /mnt/models, 0.0.0.0 as they are
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(models_dir / "lenet5-mnist.onnx", models)
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        start = time.monotonic()
        proc = run_in_image(*argv, volumes={models: "/mnt/models"}, stdout=out, stderr=subprocess.STDOUT)
    try:
        client = triton_http.InferenceServerClient(f"127.0.0.1:{ports[8080]}", connection_timeout=5, network_timeout=10)
        while not _ready(client):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() - start < READY_WITHIN_S, log.read_text()
            time.sleep(0.1)
        startup = time.monotonic() - start
        _, x, _ = mnist_batch
        x = np.ascontiguousarray(x[:8].reshape(8, 1, 28, 28), dtype=np.float32)
        tensor = triton_http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        logits = client.infer("lenet5-mnist", [tensor]).as_numpy("logits")
        client.close()
        session = ort.InferenceSession(str(models_dir / "lenet5-mnist.onnx"), providers=["CPUExecutionProvider"])
        expected = session.run(["logits"], {"input": x})[0]
        assert logits.shape == expected.shape and logits.dtype == np.float32
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
        # The image's HEALTHCHECK, as Docker would run it inside the container (its port mapped).
        check = [re.sub(r":8080/", f":{ports[8080]}/", a) for a in config["Healthcheck"]["Test"][1:]]
        assert in_image(*check).returncode == 0
    finally:
        stop(proc)
    print(f"\nimage {TAG}: {image['size']} ({image['compressed_mb']:.0f} MB compressed); build "
          f"{image['build_s']:.0f} s ({'with' if image['base_built'] else 'reusing'} the debootstrap base); "
          f"start-up to ready {startup:.1f} s")


def _ready(client) -> bool:
    try:
        return client.is_server_ready()
    except Exception:  # not listening yet: tritonclient raises its own and gevent's errors
        return False
