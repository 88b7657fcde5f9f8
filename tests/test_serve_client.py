"""`python -m serve.client` as a user runs it, in its own process, against real servers on
127.0.0.1: TLS, a server that is not there, a model without a test accuracy, and what its
output says."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.own_models import linear_classifier
from tests.serving import running_server
from tests.test_serve_security import self_signed

EXAMPLES = Path(__file__).resolve().parent.parent / "serve" / "examples"


def client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serve.client", *args], capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tls_server(models_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(folder)
    with running_server(models_dir, tls_cert=cert, tls_key=key) as (_, port):
        yield port, cert


def test_the_client_reaches_a_tls_server(tls_server):
    """Our own --tls-cert server, from the client (it had an insecure channel only, and said
    "Socket closed"): --root-cert trusts the self-signed certificate; each wrong combination
    says what to change."""
    port, cert = tls_server
    listed = client("list", "--server", f"localhost:{port}", "--root-cert", str(cert))
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["lenet5-fashion-mnist", "lenet5-mnist"]
    predicted = client("--server", f"localhost:{port}", "--root-cert", str(cert), "predict", "lenet5",
                       str(EXAMPLES / "digit-7-0.png"), "--top-k", "1")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.splitlines()[-1].split() == ["7", "7", "1.0000"]
    plain = one_line_error(client("list", "--server", f"localhost:{port}"))
    assert plain.startswith(f"error: the server at localhost:{port} closed the connection: if it was started "
                            "with --tls-cert, add --tls")
    untrusted = one_line_error(client("list", "--server", f"localhost:{port}", "--tls"))
    assert untrusted == (f"error: the certificate of the server at localhost:{port} is not trusted: give it (or "
                         "its CA) with --root-cert FILE")


def test_tls_against_a_plaintext_server_says_so(models_dir, tmp_path):
    cert, _ = self_signed(tmp_path)
    with running_server(models_dir) as (_, port):
        said = one_line_error(client("list", "--server", f"127.0.0.1:{port}", "--root-cert", str(cert)))
    assert said == f"error: the server at 127.0.0.1:{port} does not speak TLS: leave out --tls and --root-cert"


def test_no_server_suggests_starting_one():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    said = one_line_error(client("list", "--server", address))
    assert said == (f"error: no server is listening at {address}; start one with `python -m serve` (or name "
                    "another with --server HOST:PORT; --wait S waits for one that is starting)")
    said = one_line_error(client("list", "--server", address, "--wait", "0.5"))
    assert said == f"error: no server answered at {address} within 0.5 s; start one with `python -m serve`"


def test_list_says_no_accuracy_where_a_model_has_none(models_dir, tmp_path):
    """A model without a test accuracy in its metadata was listed at "test accuracy 0.00%"."""
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path)
    linear_classifier(tmp_path / "plain.onnx", batch="n")
    with running_server(tmp_path) as (_, port):
        listed = client("list", "--server", f"127.0.0.1:{port}")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert rows["lenet5-mnist"].endswith("test accuracy 99.25%")
    assert rows["plain"].endswith("ready on CPUExecutionProvider") and "accuracy" not in rows["plain"]


def test_predict_output_has_a_header(models_dir):
    fashion = EXAMPLES / "fashion-mnist-ankle-boot-0.png"
    with running_server(models_dir) as (_, port):
        result = client("predict", "lenet5", str(fashion), "--dataset", "fashion-mnist", "--server",
                        f"127.0.0.1:{port}", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "lenet5-fashion-mnist v1 on CPUExecutionProvider"
    assert lines[1:3] == [str(fashion), "  #  label        probability"]
    assert lines[3].split()[:3] == ["9", "Ankle", "boot"] and len(lines) == 5
