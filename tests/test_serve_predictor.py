"""zoo.v1.Predictor end to end: a real server on loopback and a real gRPC client."""

from __future__ import annotations

import io

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from serve.gen import predictor_pb2 as pb
from tests.serving import TIMEOUT, predictor_stub, running_server


@pytest.fixture(scope="module")
def server(models_dir):
    with running_server(models_dir, metrics_port=0) as (srv, port):
        yield srv, port


@pytest.fixture
def stub(server):
    with predictor_stub(server[1]) as s:
        yield s


@pytest.fixture(scope="module")
def expected_logits(models_dir, mnist_batch):
    sess = ort.InferenceSession(str(models_dir / "lenet5-mnist.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": mnist_batch[1]})[0]


def tensor_request(x: np.ndarray, dtype=pb.DTYPE_FLOAT32, **kw) -> pb.PredictRequest:
    return pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(shape=list(x.shape), dtype=dtype,
                                                                   data=x.tobytes()), **kw)


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def test_float_tensor_matches_in_process_onnxruntime(stub, mnist_batch, expected_logits):
    _, x, labels = mnist_batch
    response = stub.Predict(tensor_request(x, top_k=3), timeout=TIMEOUT)
    assert response.model == "lenet5-mnist" and response.version == "1"
    assert response.execution_provider == "CPUExecutionProvider"
    logits = np.array([p.logits for p in response.predictions], dtype=np.float32)
    assert logits.shape == (64, 10)
    np.testing.assert_allclose(logits, expected_logits, rtol=0, atol=1e-5)
    top1 = np.array([p.top_k[0].index for p in response.predictions])
    assert (top1 == labels).mean() >= 0.98
    first = response.predictions[0]
    assert [s.label for s in first.top_k] == [str(s.index) for s in first.top_k]
    probs = [s.probability for s in first.top_k]
    assert probs == sorted(probs, reverse=True) and len(probs) == 3
    assert sum(first.probabilities) == pytest.approx(1.0, abs=1e-5)


def test_uint8_pixels_are_normalized_by_the_server(stub, mnist_batch, expected_logits):
    raw, _, _ = mnist_batch
    response = stub.Predict(tensor_request(raw[:, None], dtype=pb.DTYPE_UINT8), timeout=TIMEOUT)
    logits = np.array([p.logits for p in response.predictions], dtype=np.float32)
    np.testing.assert_allclose(logits, expected_logits, rtol=0, atol=1e-4)


def test_three_dimensional_shape_is_accepted(stub, mnist_batch, expected_logits):
    _, x, _ = mnist_batch
    response = stub.Predict(tensor_request(x[:5, 0]), timeout=TIMEOUT)
    assert len(response.predictions) == 5


def test_png_and_jpeg_images(stub, mnist_batch, expected_logits):
    raw, _, labels = mnist_batch
    files = [png(raw[i]) for i in range(8)] + [png(raw[8], "JPEG")]
    response = stub.Predict(pb.PredictRequest(model="lenet5-mnist", images=pb.EncodedImages(images=files)),
                            timeout=TIMEOUT)
    logits = np.array([p.logits for p in response.predictions], dtype=np.float32)
    np.testing.assert_allclose(logits[:8], expected_logits[:8], rtol=0, atol=1e-4)  # PNG is lossless
    assert response.predictions[8].top_k[0].index == labels[8]  # JPEG: still the right class


def test_large_rgb_image_is_converted_and_resized(stub, mnist_batch):
    raw, _, labels = mnist_batch
    big = np.asarray(Image.fromarray(raw[0]).resize((112, 112)).convert("RGB"))
    response = stub.Predict(pb.PredictRequest(model="lenet5-mnist", images=pb.EncodedImages(images=[png(big)])),
                            timeout=TIMEOUT)
    assert response.predictions[0].top_k[0].index == labels[0]


def test_top_k_bounds(stub, mnist_batch):
    _, x, _ = mnist_batch
    assert len(stub.Predict(tensor_request(x[:1], top_k=0), timeout=TIMEOUT).predictions[0].top_k) == 1
    assert len(stub.Predict(tensor_request(x[:1], top_k=99), timeout=TIMEOUT).predictions[0].top_k) == 10


def test_list_and_get_models(stub):
    models = stub.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT).models
    assert [m.name for m in models] == ["lenet5-fashion-mnist", "lenet5-mnist"]
    info = stub.GetModel(pb.GetModelRequest(model="lenet5-fashion-mnist"), timeout=TIMEOUT)
    assert info.ready and info.dataset == "fashion-mnist"
    assert info.labels[9] == "Ankle boot"
    assert list(info.input_shape) == [-1, 1, 28, 28]
    assert info.mean == pytest.approx(0.2860) and info.std == pytest.approx(0.3530)
    assert info.test_accuracy > 0.9
    assert info.metadata["weights_sha256"]


def test_batches_up_to_the_limit(stub, mnist_batch):
    _, x, _ = mnist_batch
    big = np.concatenate([x] * 16)  # 1,024 images: the default per-request limit
    response = stub.Predict(tensor_request(big), timeout=TIMEOUT)
    assert len(response.predictions) == 1024


def test_metrics_count_requests_codes_and_batches(server, stub, mnist_batch):
    import urllib.request

    srv, _ = server
    _, x, _ = mnist_batch
    stub.Predict(tensor_request(x[:2]), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError):
        stub.Predict(pb.PredictRequest(model="lenet5-mnist"), timeout=TIMEOUT)
    text = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=TIMEOUT).read().decode()
    assert 'zoo_requests_total{api="predictor",code="OK",method="Predict",model="lenet5-mnist"}' in text
    assert 'code="INVALID_ARGUMENT",method="Predict",model="lenet5-mnist"' in text
    assert 'zoo_request_latency_seconds_bucket{api="predictor"' in text
    assert 'zoo_batch_size_images_count{model="lenet5-mnist"}' in text


@pytest.mark.parametrize("threads", [0, 1])
def test_small_and_large_runs_agree_across_sessions(models_dir, mnist_batch, threads):
    from serve.core.registry import SINGLE_THREAD_BELOW, load_model

    _, x, _ = mnist_batch
    model = load_model(models_dir / "lenet5-mnist.onnx", "cpu", threads)
    if threads == 1:
        assert model.small_session is None  # the one session already has a single thread
    else:
        assert model.small_session.get_session_options().intra_op_num_threads == 1
    reference = model.session.run(["logits"], {"input": x})[0]
    for n in (1, SINGLE_THREAD_BELOW - 1, SINGLE_THREAD_BELOW, len(x)):
        out = model.run(x[:n])
        assert out.shape == (n, 10)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, reference[:n], rtol=0, atol=1e-5)


def test_large_runs_go_single_threaded_while_the_model_is_crowded():
    from serve.core.registry import CROWDED_MEMORY_S, ServedModel

    used = []

    class Session:
        def __init__(self, name):
            self.name = name

        def run(self, names, feed):
            used.append(self.name)
            return [np.zeros((len(feed["input"]), 10), np.float32)]

    model = ServedModel(name="m", path=None, session=Session("threaded"), small_session=Session("single"))
    x = np.zeros((64, 1, 28, 28), np.float32)
    model.run(x)
    model.run(x[:1])
    model.running = 1  # another run is in flight
    model.run(x)
    model.running = 0
    model.run(x)  # still crowded: it was a moment ago
    model.crowded_at -= CROWDED_MEMORY_S
    model.run(x)  # quiet again
    assert used == ["threaded", "single", "single", "single", "threaded"]
