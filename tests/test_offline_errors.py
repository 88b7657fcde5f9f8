"""The offline tools on broken files: one-line errors naming the file, never a traceback,
and nothing half-written after a failed or interrupted run."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from zoo.weights import WEIGHTS_DIR


def run_cli(*args, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_line_error(result, *fragments, code=2):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def corrupt_data(tmp_path, data_dir):
    root = tmp_path / "data" / "mnist"
    root.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_dir / "mnist" / name, root)
    full = (root / "t10k-images-idx3-ubyte.gz").read_bytes()
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(full[: len(full) // 3])  # truncated
    return tmp_path / "data"


@pytest.fixture
def weights_copy(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(WEIGHTS_DIR / f"lenet5-mnist{suffix}", folder)
    return folder


def test_evaluate_with_truncated_idx(corrupt_data):
    result = run_cli("zoo", "evaluate", "lenet5", "--data-dir", str(corrupt_data))
    assert_one_line_error(result, "t10k-images-idx3-ubyte.gz", "gzip stream ends early")


def test_export_with_truncated_idx(corrupt_data, tmp_path):
    result = run_cli("export", "lenet5", "--data-dir", str(corrupt_data), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "t10k-images-idx3-ubyte.gz")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_tampered_safetensors(weights_copy, data_dir):
    path = weights_copy / "lenet5-mnist.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    result = run_cli("zoo", "evaluate", "lenet5", "--weights", str(weights_copy), "--data-dir", str(data_dir))
    assert_one_line_error(result, "lenet5-mnist.safetensors: SHA-256")


def test_garbage_safetensors_with_matching_hash(weights_copy, data_dir):
    from zoo.weights import sha256sum

    path = weights_copy / "lenet5-mnist.safetensors"
    path.write_bytes(b"\xff" * 64)
    card = json.loads((weights_copy / "lenet5-mnist.json").read_text())
    card["weights_sha256"] = sha256sum(path)
    (weights_copy / "lenet5-mnist.json").write_text(json.dumps(card))
    result = run_cli("zoo", "evaluate", "lenet5", "--weights", str(weights_copy), "--data-dir", str(data_dir))
    assert_one_line_error(result, "lenet5-mnist.safetensors: not a readable safetensors file")


def test_broken_model_card(weights_copy, data_dir, tmp_path):
    (weights_copy / "lenet5-mnist.json").write_text('{"model": "lenet5"')
    result = run_cli("zoo", "evaluate", "lenet5", "--weights", str(weights_copy), "--data-dir", str(data_dir))
    assert_one_line_error(result, "lenet5-mnist.json: model card is not valid JSON")
    result = run_cli("export", "lenet5", "--weights", str(weights_copy / "lenet5-mnist.safetensors"),
                     "--name", "mine", "--out", str(tmp_path / "out"), "--data-dir", str(data_dir))
    assert_one_line_error(result, "lenet5-mnist.json: model card is not valid JSON")


def test_serve_strict_with_a_corrupt_onnx(models_dir, tmp_path):
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path)
    data = (models_dir / "lenet5-fashion-mnist.onnx").read_bytes()
    (tmp_path / "lenet5-fashion-mnist.onnx").write_bytes(data[: len(data) // 2])
    result = run_cli("serve", "--models", str(tmp_path), "--port", "0", "--strict")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "lenet5-fashion-mnist.onnx" in last
    assert "Traceback" not in result.stderr


def interrupt_when(args, ready_line: str, then_seconds: float):
    """Start `python -m args`, wait (bounded) for a stdout line starting with `ready_line`
    (so the work is under way, past the imports), then press Ctrl-C `then_seconds` later."""
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith(ready_line):
            break
    time.sleep(then_seconds)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("flag", [["--max-batch", "-1"], ["--batch-delay-ms", "-2"], ["--instances", "0"],
                                  ["--max-request-images", "0"]])
def test_serve_refuses_bad_limits(models_dir, flag):
    result = run_cli("serve", "--models", str(models_dir), "--port", "0", *flag)
    assert_one_line_error(result, "--instances >= 1")


def test_serve_refuses_no_handler_threads(models_dir):
    result = run_cli("serve", "--models", str(models_dir), "--port", "0", "--threads", "0")
    assert_one_line_error(result, "--threads 0: expected at least 1 handler thread")


def test_interrupted_training_leaves_nothing(tmp_path, data_dir):
    out = tmp_path / "run"
    code, err = interrupt_when(["zoo", "train", "twoblock-cnn", "--epochs", "3", "--out", str(out),
                                "--data-dir", str(data_dir), "--no-progress"], "training ", 2.0)
    # Ctrl-C may land anywhere, even in a finalizer that Python reports on its way out;
    # what matters is the exit status, the last word, and that nothing was left behind.
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; nothing half-written was kept", err
    assert not out.exists() or list(out.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    import zoo.download as download

    class Response:
        headers = {"Content-Length": "100000"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            raise KeyboardInterrupt  # Ctrl-C in the middle of the transfer

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Response())
    with pytest.raises(KeyboardInterrupt):
        download.download_file("x.gz", "0" * 32, tmp_path, ("http://127.0.0.1:9/",), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_gzip_with_bad_crc_is_named(tmp_path):
    from zoo.idx import IdxFormatError, read_idx

    data = bytearray(gzip.compress(b"\0\0\x08\x01\0\0\0\x02ab"))
    data[-8] ^= 0xFF  # corrupt the CRC32 in the trailer
    (tmp_path / "bad.gz").write_bytes(bytes(data))
    with pytest.raises(IdxFormatError, match="bad.gz: not a valid gzip file"):
        read_idx(tmp_path / "bad.gz")


def test_interrupted_export_leaves_only_whole_files(tmp_path, data_dir):
    import onnx

    out = tmp_path / "models"
    code, err = interrupt_when(["export", "--all", "--out", str(out), "--data-dir", str(data_dir)],
                               "  wrote", 1.0)  # the first model is written, the second under way
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; nothing half-written was kept", err
    files = list(out.rglob("*"))
    assert not [p for p in files if p.name.endswith(".part")]
    assert list(out.glob("*.onnx"))  # the first model was written before the interrupt
    for model in out.glob("*.onnx"):
        onnx.checker.check_model(onnx.load(model))  # whatever was written is whole
        assert model.with_suffix(".report.json").exists()


@pytest.mark.parametrize("argv,message", [
    (["summary", "lenett"], "error: unknown model 'lenett'; valid models: lenet5, lenet5-classic"),
    (["train", "lenet5", "--dataset", "kmnist"], "error: unknown dataset 'kmnist'; valid datasets: fashion-mnist, mnist"),
    (["evaluate", "resnet"], "error: unknown model 'resnet'"),
    (["viz", "lenet5", "--index", "1", "--dataset", "emnist"], "error: unknown dataset 'emnist'"),
    # sizes refused in our words before torch loads and the data is read (issue 21, item 12)
    (["train", "lenet5", "--batch-size", "0"], "error: --batch-size 0: expected a whole number of at least 1"),
    (["train", "lenet5", "--batch-size", "-8"], "error: --batch-size -8: expected a whole number of at least 1"),
    (["train", "lenet5", "--epochs", "0"], "error: --epochs 0: expected a whole number of at least 1"),
    (["train", "lenet5", "--train-limit", "0"], "error: --train-limit 0: expected a whole number of at least 1"),
    (["train", "lenet5", "--threads", "-1"], "error: --threads -1: expected a whole number of at least 1"),
    (["train", "lenet5", "--lr", "0"], "error: --lr 0.0: expected a learning rate above 0"),
    (["viz", "lenet5", "--index", "-1"], "error: --index -1: expected a test-set index of at least 0"),
    (["viz", "lenet5", "--index", "1", "--name", "mine"], "error: --name goes with --weights"),
])
def test_zoo_refuses_a_typo_before_importing_torch(argv, message):
    from tests.blocked_imports import run_module

    # torch cannot be imported here: the refusal must come from the arguments alone.
    result = run_module("zoo", argv, blocked=("torch",))
    assert_one_line_error(result, message)


def test_zoo_without_torch_names_the_extra_to_install():
    from tests.blocked_imports import run_module

    result = run_module("zoo", ["summary", "lenet5"], blocked=("torch",))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: python -m zoo needs torch, which this environment lacks; install the zoo extra: "
        "pip install -c constraints.txt \".[zoo]\""]


def test_zoo_help_lists_every_command_without_torch():
    from tests.blocked_imports import run_module

    result = run_module("zoo", ["--help"], blocked=("torch",))
    assert result.returncode == 0, result.stderr
    usage = result.stdout.splitlines()[0]
    assert usage == "usage: python -m zoo [-h] [--version] {list,summary,train,evaluate,viz} ..."
    assert result.stdout.split("\n\n")[1].startswith("python -m zoo {list,summary,train,evaluate,viz}")


def test_evaluate_without_data_or_network_says_what_to_do(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    result = run_cli("zoo", "evaluate", "lenet5", "--data-dir", str(tmp_path / "none"),
                     env_extra={"ZOO_DATA_MIRRORS": dead})
    assert_one_line_error(result, "could not download t10k-images-idx3-ubyte.gz", "--data-dir", "ZOO_DATA_DIR",
                          "ZOO_DATA_MIRRORS")


@pytest.mark.parametrize("flag,message", [
    (["--http-port", "70000"], "--http-port 70000: expected a port from 0 (any free one) to 65535"),
    (["--port", "70000"], "--grpc-port 70000: expected a port from 0 (any free one) to 65535"),
    (["--grpc-port", "-1"], "--grpc-port -1: expected a port from 0 (any free one) to 65535"),
    (["--metrics-port", "65536"], "--metrics-port 65536: expected a port from 0"),
    (["--grace", "-1"], "--grace -1: expected 0 or more seconds"),
    (["--ort-threads", "-2"], "--ort-threads -2: expected 0"),
])
def test_serve_refuses_out_of_range_settings_before_loading(tmp_path, flag, message):
    """Checked before any model loads: the models directory here does not even exist."""
    result = run_cli("serve", "--models", str(tmp_path / "none"), *flag)
    assert_one_line_error(result, message)


def test_serve_refuses_a_busy_metrics_port_naming_it(models_dir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--models", str(models_dir), "--port", "0", "--metrics-port", str(port))
    assert_one_line_error(result, f"cannot bind the metrics endpoint 127.0.0.1:{port} (--metrics-port)", code=1)


def test_serve_version():
    from serve import __version__

    result = run_cli("serve", "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"python -m serve {__version__}"


def test_tests_without_the_data_stop_with_one_message(tmp_path):
    """Offline, with no ZOO_DATA_DIR and an empty cache: one message up front saying what to
    set, instead of every test that needs the data failing with its own traceback."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    env = {k: v for k, v in os.environ.items() if k != "ZOO_DATA_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), ZOO_DATA_MIRRORS=dead)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_data.py",
                             "tests/test_idx.py"], capture_output=True, text=True, timeout=300, env=env,
                            cwd=WEIGHTS_DIR.parent.parent)
    assert result.returncode == 4, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert out.count("the tests need MNIST and Fashion-MNIST: could not download") == 1, out
    assert "ZOO_DATA_DIR" in out and "Traceback" not in out and " passed" not in out and " failed" not in out
