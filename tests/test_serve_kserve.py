"""The KServe v2 protocol, driven by tritonclient.grpc, unchanged."""

from __future__ import annotations

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from serve.core import Limits
from tests.serving import TIMEOUT, running_server, triton_client


@pytest.fixture(scope="module")
def server(models_dir):
    with running_server(models_dir, limits=Limits(max_batch=64, batch_delay_s=0.002)) as (srv, port):
        yield srv, port


@pytest.fixture
def client(server):
    with triton_client(server[1]) as c:
        yield c


@pytest.fixture(scope="module")
def expected(models_dir, mnist_batch):
    sess = ort.InferenceSession(str(models_dir / "lenet5-mnist.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": mnist_batch[1]})[0]


def infer_input(x: np.ndarray, datatype="FP32", name="input") -> triton.InferInput:
    tensor = triton.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def test_liveness_readiness_and_metadata(client):
    assert client.is_server_live(client_timeout=TIMEOUT)
    assert client.is_server_ready(client_timeout=TIMEOUT)
    assert client.is_model_ready("lenet5-mnist", client_timeout=TIMEOUT)
    meta = client.get_server_metadata(as_json=True, client_timeout=TIMEOUT)
    assert meta["name"] == "cnn-zoo" and "classification" in meta["extensions"]
    model = client.get_model_metadata("lenet5-mnist", as_json=True, client_timeout=TIMEOUT)
    assert model["platform"] == "onnxruntime_onnx" and model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "1", "28", "28"]}]
    assert model["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": ["-1", "10"]}]


def test_execution_provider_travels_in_response_headers(server):
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for call, request in ((stub.ServerMetadata, service_pb2.ServerMetadataRequest()),
                              (stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="lenet5-mnist"))):
            _, rpc = call.with_call(request, timeout=TIMEOUT)
            assert ("x-execution-provider", "CPUExecutionProvider") in rpc.initial_metadata()


def test_model_config(client, server):
    config = client.get_model_config("lenet5-fashion-mnist", as_json=True, client_timeout=TIMEOUT)["config"]
    assert config["platform"] == "onnxruntime_onnx"
    limits = server[0].plane.limits
    assert config["max_batch_size"] == limits.max_batch  # the largest batch the batcher forms
    assert config["dynamic_batching"]["preferred_batch_size"] == [limits.max_batch]
    assert config["input"][0]["dims"] == ["1", "28", "28"]
    assert config["output"][0]["dims"] == ["10"]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["execution_provider"]["string_value"] == "CPUExecutionProvider"
    assert "dynamic_batching" in config


def test_infer_raw_matches_in_process(client, mnist_batch, expected):
    _, x, _ = mnist_batch
    result = client.infer("lenet5-mnist", [infer_input(x)], outputs=[triton.InferRequestedOutput("logits")],
                          client_timeout=TIMEOUT, request_id="r1")
    logits = result.as_numpy("logits")
    assert logits.shape == (64, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
    assert result.get_response().id == "r1"


def test_infer_uint8_pixels(client, mnist_batch, expected):
    raw, _, _ = mnist_batch
    result = client.infer("lenet5-mnist", [infer_input(raw[:, None], "UINT8")], client_timeout=TIMEOUT)
    np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=0, atol=1e-4)


def test_infer_typed_contents(server, mnist_batch, expected):
    _, x, _ = mnist_batch
    request = service_pb2.ModelInferRequest(model_name="lenet5-mnist")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[4, 1, 28, 28])
    tensor.contents.fp32_contents.extend(x[:4].ravel().tolist())
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=TIMEOUT)
    assert response.outputs[0].name == "logits" and list(response.outputs[0].shape) == [4, 10]
    logits = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(4, 10)
    np.testing.assert_allclose(logits, expected[:4], rtol=0, atol=1e-5)


def test_classification_extension(client, mnist_batch):
    _, x, labels = mnist_batch
    out = triton.InferRequestedOutput("logits", class_count=3)
    result = client.infer("lenet5-mnist", [infer_input(x[:5])], outputs=[out], client_timeout=TIMEOUT)
    classes = result.as_numpy("logits")
    assert classes.shape == (5, 3)
    value, index, label = classes[0, 0].decode().split(":")
    assert int(index) == labels[0] and label == str(labels[0]) and float(value) > 0


def test_an_output_requested_twice_is_refused(client, mnist_batch):
    """As a duplicated input is, and as Triton does: once classified and once not is still twice."""
    _, x, _ = mnist_batch
    outputs = [triton.InferRequestedOutput("logits", class_count=2), triton.InferRequestedOutput("logits")]
    with pytest.raises(InferenceServerException) as info:
        client.infer("lenet5-mnist", [infer_input(x[:2])], outputs=outputs, client_timeout=TIMEOUT)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "outputs[1].name: output 'logits' is asked for twice" in info.value.message()


def test_statistics_and_repository_index(client, mnist_batch):
    _, x, _ = mnist_batch
    client.infer("lenet5-fashion-mnist", [infer_input(x[:3])], client_timeout=TIMEOUT)
    stats = client.get_inference_statistics("lenet5-fashion-mnist", as_json=True, client_timeout=TIMEOUT)
    entry = stats["model_stats"][0]
    assert entry["name"] == "lenet5-fashion-mnist"
    assert int(entry["inference_count"]) >= 3 and int(entry["execution_count"]) >= 1
    assert int(entry["inference_stats"]["success"]["count"]) >= 1
    assert entry["batch_stats"]
    index = client.get_model_repository_index(as_json=True, client_timeout=TIMEOUT)["models"]
    assert {m["name"] for m in index} == {"lenet5-mnist", "lenet5-fashion-mnist"}


def test_unknown_model_is_not_found(client, mnist_batch):
    _, x, _ = mnist_batch
    with pytest.raises(InferenceServerException) as info:
        client.infer("lenet9", [infer_input(x[:1])], client_timeout=TIMEOUT)
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "available: lenet5-fashion-mnist, lenet5-mnist" in info.value.message()


def test_statistics_have_tritons_meaning(server, mnist_batch):
    """Triton's InferStatistics: every successful request counted once in success, queue,
    compute_input, compute_infer and compute_output (perf_analyzer requires the compute
    counts equal), their times adding up to the request's; batch stats per run size;
    cache_hit and cache_miss present at 0 (no response cache)."""
    from serve.gen import grpc_service_pb2 as kpb

    _, x, _ = mnist_batch
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def stats() -> kpb.ModelStatistics:
            return stub.ModelStatistics(kpb.ModelStatisticsRequest(name="lenet5-mnist", version="1"),
                                        timeout=TIMEOUT).model_stats[0]

        before = stats()
        request = kpb.ModelInferRequest(model_name="lenet5-mnist")
        request.inputs.add(name="input", datatype="FP32", shape=x[:5].shape)
        request.raw_input_contents.append(x[:5].tobytes())
        for _ in range(3):
            stub.ModelInfer(request, timeout=TIMEOUT)
        after = stats()
    s, b = after.inference_stats, before.inference_stats
    assert after.inference_count - before.inference_count == 15  # images
    for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert getattr(s, key).count - getattr(b, key).count == 3, key
    assert s.cache_hit.count == s.cache_miss.count == 0 and s.fail.count == b.fail.count
    assert s.compute_infer.ns > b.compute_infer.ns and s.compute_input.ns > b.compute_input.ns
    parts = sum(getattr(s, k).ns - getattr(b, k).ns for k in ("queue", "compute_input", "compute_infer",
                                                               "compute_output"))
    assert parts <= s.success.ns - b.success.ns  # the stages lie within the request's time
    sizes = {batch.batch_size: batch for batch in after.batch_stats}
    assert 5 in sizes and sizes[5].compute_infer.count == sizes[5].compute_input.count == sizes[5].compute_output.count
    assert after.last_inference > 0
