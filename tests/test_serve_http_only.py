"""An HTTP-only server (`--grpc-port off`), as KServe's serverless mode runs it (one port):
it starts with grpcio not even importable, answers tritonclient.http, and drains on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import numpy as np
import tritonclient.http as thttp

from tests.blocked_imports import BLOCKER, ROOT
from tests.serving import TIMEOUT

ADDRESS = re.compile(r"serving 2 models on http://([\d.]+:\d+) ")


def start_without_grpc(models_dir, *args: str) -> tuple[subprocess.Popen, str, list[str]]:
    code = BLOCKER.format(blocked={"grpc", "grpc_health", "grpc_reflection"}) + (
        f"import runpy; sys.argv = ['serve', *{list(args)!r}]; runpy.run_module('serve', run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, ], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if match := ADDRESS.search(line):
            return proc, match.group(1), lines
    proc.wait(TIMEOUT)
    raise AssertionError("the server did not start:\n" + "".join(lines))


def test_http_only_server_serves_without_grpcio(models_dir, mnist_batch):
    _, x, _ = mnist_batch
    proc, address, lines = start_without_grpc(models_dir, "--models", str(models_dir), "--grpc-port", "off",
                                              "--http-port", "0")
    try:
        client = thttp.InferenceServerClient(address, network_timeout=TIMEOUT)
        assert client.is_server_ready() and client.is_model_ready("lenet5-mnist")
        tensor = thttp.InferInput("input", list(x[:4].shape), "FP32")
        tensor.set_data_from_numpy(x[:4])
        logits = client.infer("lenet5-mnist", [tensor]).as_numpy("logits")
        client.close()
        assert logits.shape == (4, 10) and logits.dtype == np.float32
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "grpc://" not in output and "Traceback" not in output


def test_both_front_ends_off_is_one_line(models_dir):
    result = subprocess.run([sys.executable, "-m", "serve", "--models", str(models_dir), "--grpc-port", "off"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --grpc-port off and --http-port off: at least one front end must "
                                     "serve")
