"""The CUDA execution provider, end to end. These run only where onnxruntime has the
CUDA provider and a GPU answers (onnxruntime-gpu on a GPU machine); elsewhere the
fail-closed tests in test_serve_lifecycle.py cover the CPU-only side."""

from __future__ import annotations

import subprocess
import sys
from concurrent import futures

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import model_config_pb2 as mc

from bench.server_process import start_server
from serve.core import Limits
from serve.core.device import CPU, CUDA, DeviceError, make_session
from serve.gen import predictor_pb2 as pb
from tests.serving import TIMEOUT, predictor_stub, running_server

if CUDA not in ort.get_available_providers():
    pytest.skip("this onnxruntime has no CUDA execution provider", allow_module_level=True)

# onnxruntime's CUDA provider may run float32 convolutions and GEMMs in TF32 on the
# tensor cores, with 10-bit mantissas: logits agree with the CPU to about 1e-3 of their scale.
RTOL, ATOL = 1e-2, 1e-2


@pytest.fixture(scope="module")
def cpu_logits(models_dir, mnist_batch):
    sess = make_session((models_dir / "lenet5-mnist.onnx").read_bytes(), "cpu")
    return sess.run(["logits"], {"input": mnist_batch[1]})[0]


@pytest.fixture(scope="module")
def cuda_server(models_dir):
    with running_server(models_dir, device="cuda", limits=Limits(max_batch=64, batch_delay_s=0.002)) as (srv, port):
        yield srv, port


def test_cuda_session_matches_the_cpu(models_dir, mnist_batch, cpu_logits):
    try:
        sess = make_session((models_dir / "lenet5-mnist.onnx").read_bytes(), "cuda")
    except DeviceError as e:
        pytest.skip(f"no usable GPU: {e}")
    assert sess.get_providers()[0] == CUDA
    logits = sess.run(["logits"], {"input": mnist_batch[1]})[0]
    assert logits.shape == cpu_logits.shape == (64, 10)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, cpu_logits, rtol=RTOL, atol=ATOL)
    assert (logits.argmax(1) == cpu_logits.argmax(1)).all()


def test_served_on_cuda_through_both_apis(cuda_server, mnist_batch, cpu_logits):
    _, port = cuda_server
    raw, x, _ = mnist_batch
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        logits = client.infer("lenet5-mnist", [tensor], client_timeout=TIMEOUT).as_numpy("logits")
        np.testing.assert_allclose(logits, cpu_logits, rtol=RTOL, atol=ATOL)
        config = client.get_model_config("lenet5-mnist", client_timeout=TIMEOUT).config
        assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
        assert config.parameters["execution_provider"].string_value == CUDA
    finally:
        client.close()
    with predictor_stub(port) as stub:
        request = pb.PredictRequest(model="lenet5-mnist", top_k=1, tensor=pb.Tensor(
            shape=[len(raw), 1, 28, 28], dtype=pb.DTYPE_UINT8, data=raw.tobytes()))
        response = stub.Predict(request, timeout=TIMEOUT)
    assert response.execution_provider == CUDA
    assert [p.top_k[0].index for p in response.predictions] == cpu_logits.argmax(1).tolist()


def test_concurrent_batch1_requests_on_cuda_are_batched_and_split_back(cuda_server, mnist_batch, cpu_logits):
    server, port = cuda_server
    x = mnist_batch[1]

    def one(i: int) -> np.ndarray:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            tensor = triton.InferInput("input", [1, 1, 28, 28], "FP32")
            tensor.set_data_from_numpy(x[i:i + 1])
            return client.infer("lenet5-mnist", [tensor], client_timeout=TIMEOUT).as_numpy("logits")[0]
        finally:
            client.close()

    with futures.ThreadPoolExecutor(16) as pool:
        logits = np.stack(list(pool.map(one, range(64))))
    np.testing.assert_allclose(logits, cpu_logits, rtol=RTOL, atol=ATOL)


def test_hidden_gpu_cuda_refuses_and_auto_falls_back(models_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the provider is installed, no GPU answers
    result = subprocess.run([sys.executable, "-m", "serve", "--models", str(models_dir), "--device", "cuda"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "error: --device cuda: onnxruntime could not" in result.stderr
    server = start_server(models_dir, "--device", "auto")
    try:
        assert "CUDA is not usable here" in server.output and f"provider {CPU}" in server.output
        with grpc.insecure_channel(server.address) as channel:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    finally:
        assert server.stop() == 0


def test_cli_cuda_logs_the_provider_it_really_got(models_dir):
    server = start_server(models_dir, "--device", "cuda")
    try:
        assert f"provider {CUDA}" in server.output
    finally:
        assert server.stop() == 0
