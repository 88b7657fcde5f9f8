"""Every bad input gets a precise status and message; the server keeps serving after."""

from __future__ import annotations

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from serve.core import Limits
from serve.gen import predictor_pb2 as pb
from tests.serving import TIMEOUT, predictor_stub, running_server

INVALID = grpc.StatusCode.INVALID_ARGUMENT
GOOD = np.zeros((2, 1, 28, 28), np.float32)


@pytest.fixture(scope="module")
def server(models_dir):
    with running_server(models_dir, limits=Limits(max_request_images=256)) as (srv, port):
        yield srv, port


def tensor(shape, data: bytes, dtype=pb.DTYPE_FLOAT32):
    return pb.Tensor(shape=shape, dtype=dtype, data=data)


PREDICT_CASES = [
    ("unknown model", pb.PredictRequest(model="lenet9", tensor=tensor([2, 1, 28, 28], GOOD.tobytes())),
     grpc.StatusCode.NOT_FOUND, "model 'lenet9' is not served; available: lenet5-fashion-mnist, lenet5-mnist"),
    ("unknown version", pb.PredictRequest(model="lenet5-mnist", version="7", tensor=tensor([2, 1, 28, 28], GOOD.tobytes())),
     grpc.StatusCode.NOT_FOUND, "has no version '7'; available: 1"),
    ("path as model name", pb.PredictRequest(model="../../etc/passwd", tensor=tensor([2, 1, 28, 28], GOOD.tobytes())),
     INVALID, "model name '../../etc/passwd' is not valid"),
    ("no input", pb.PredictRequest(model="lenet5-mnist"), INVALID, "input: neither tensor nor images is set"),
    ("wrong shape", pb.PredictRequest(model="lenet5-mnist", tensor=tensor([2, 3, 28, 28], GOOD.tobytes())),
     INVALID, "tensor.shape: shape [2, 3, 28, 28] does not match input 'input', which takes [-1, 1, 28, 28]"),
    ("negative dimension", pb.PredictRequest(model="lenet5-mnist", tensor=tensor([-2, 1, 28, 28], b"")),
     INVALID, "tensor.shape: shape [-2, 1, 28, 28] has a negative dimension"),
    ("empty batch", pb.PredictRequest(model="lenet5-mnist", tensor=tensor([0, 1, 28, 28], b"")),
     INVALID, "tensor.shape: empty batch (0 images)"),
    ("unspecified dtype", pb.PredictRequest(model="lenet5-mnist", tensor=tensor([2, 1, 28, 28], GOOD.tobytes(), 0)),
     INVALID, "tensor.dtype: DTYPE_UNSPECIFIED is not supported; expected DTYPE_FLOAT32"),
    ("byte length", pb.PredictRequest(model="lenet5-mnist", tensor=tensor([2, 1, 28, 28], GOOD.tobytes()[:-4])),
     INVALID, "tensor.data: 6268 bytes do not match shape (2, 1, 28, 28) of float32, which needs 6272"),
    ("NaN", pb.PredictRequest(model="lenet5-mnist", tensor=tensor(
        [2, 1, 28, 28], np.where(np.arange(1568).reshape(GOOD.shape) == 5, np.nan, GOOD).astype(np.float32).tobytes())),
     INVALID, "tensor.data: 1 non-finite values (NaN or Inf), the first at flat index 5"),
    ("Inf", pb.PredictRequest(model="lenet5-mnist", tensor=tensor([2, 1, 28, 28], np.full(GOOD.shape, np.inf, np.float32).tobytes())),
     INVALID, "1568 non-finite values"),
    ("undecodable image", pb.PredictRequest(model="lenet5-mnist", images=pb.EncodedImages(images=[b"\x89PNG not really"])),
     INVALID, "images.images[0]: cannot decode 15 bytes as an image"),
    ("not an image at all", pb.PredictRequest(model="lenet5-mnist", images=pb.EncodedImages(images=[b"hello"])),
     INVALID, "images.images[0]: cannot decode 5 bytes as an image (no PNG or JPEG signature; the first bytes are "
              "68 65 6c 6c 6f); expected a PNG or JPEG file"),  # not Pillow's "<_io.BytesIO object at 0x...>"
    ("no images", pb.PredictRequest(model="lenet5-mnist", images=pb.EncodedImages(images=[])),
     INVALID, "images.images: empty batch"),
    ("negative top_k", pb.PredictRequest(model="lenet5-mnist", top_k=-1, tensor=tensor([2, 1, 28, 28], GOOD.tobytes())),
     INVALID, "top_k: -1 is negative"),
    ("too many images", pb.PredictRequest(model="lenet5-mnist", tensor=tensor([257, 1, 28, 28], b"")),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "257 images exceed this server's limit of 256 per request"),
]


@pytest.mark.parametrize("case,request_,code,message", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_predict_bad_input(server, case, request_, code, message):
    with predictor_stub(server[1]) as stub:
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request_, timeout=TIMEOUT)
    assert info.value.code() == code
    assert message in info.value.details()


def infer_request(shape=(2, 1, 28, 28), datatype="FP32", raw: bytes | None = GOOD.tobytes(), name="input",
                  typed: list[float] | None = None, outputs=(), model="lenet5-mnist"):
    request = service_pb2.ModelInferRequest(model_name=model)
    t = request.inputs.add(name=name, datatype=datatype, shape=list(shape))
    if typed is not None:
        t.contents.fp32_contents.extend(typed)
    if raw is not None:
        request.raw_input_contents.append(raw)
    for out in outputs:
        request.outputs.add(name=out)
    return request


INFER_CASES = [
    ("unknown model", infer_request(model="nope"), grpc.StatusCode.NOT_FOUND, "model 'nope' is not served"),
    ("input name", infer_request(name="pixels"), INVALID, "inputs[0].name: 'pixels' is not an input of lenet5-mnist; expected 'input'"),
    ("datatype", infer_request(datatype="FP64"), INVALID, "inputs[0].datatype: 'FP64' is not supported for input 'input'; expected FP32"),
    ("shape", infer_request(shape=(2, 28, 29)), INVALID, "inputs[0].shape: shape [2, 28, 29]"),
    ("byte length", infer_request(raw=b"\0" * 10), INVALID,
     "raw_input_contents[0]: 10 bytes do not match shape (2, 1, 28, 28) of float32, which needs 6272"),
    ("raw and typed", infer_request(typed=[0.0] * 1568), INVALID,
     "inputs[0].contents and raw_input_contents are both set"),
    ("typed count", infer_request(raw=None, typed=[0.0] * 7), INVALID,
     "inputs[0].contents.fp32_contents: 7 values do not match shape [2, 1, 28, 28], which needs 1568"),
    ("output twice", infer_request(outputs=["logits", "logits"]), INVALID,
     "outputs[1].name: output 'logits' is asked for twice"),
    ("output name", infer_request(outputs=["probs"]), INVALID, "outputs[0].name: 'probs' is not an output"),
    ("empty batch", infer_request(shape=(0, 1, 28, 28), raw=b""), INVALID, "empty batch"),
    ("too large", infer_request(shape=(100000, 1, 28, 28), raw=b""), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "100000 images exceed"),
]


@pytest.mark.parametrize("case,request_,code,message", INFER_CASES, ids=[c[0] for c in INFER_CASES])
def test_model_infer_bad_input(server, case, request_, code, message):
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request_, timeout=TIMEOUT)
    assert info.value.code() == code
    assert message in info.value.details()


def test_oversized_message_is_resource_exhausted(server):
    huge = np.zeros((12000, 1, 28, 28), np.float32)  # 37.6 MB, over the 32 MiB message cap
    with predictor_stub(server[1]) as stub:
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(pb.PredictRequest(model="lenet5-mnist", tensor=tensor(list(huge.shape), huge.tobytes())),
                         timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_server_still_healthy_and_correct_after_bad_input(server, mnist_batch):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    _, x, labels = mnist_batch
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT).status == \
            health_pb2.HealthCheckResponse.SERVING
    with predictor_stub(server[1]) as stub:
        response = stub.Predict(pb.PredictRequest(model="lenet5-mnist", tensor=tensor(list(x.shape), x.tobytes())),
                                timeout=TIMEOUT)
    top1 = np.array([p.top_k[0].index for p in response.predictions])
    assert (top1 == labels).mean() >= 0.98


def test_model_infer_passes_nan_and_inf_to_the_model(server):
    """As Triton does (perf_analyzer's default random inputs hold such bit patterns): the
    model computes what it computes from them. Predict still refuses them (above)."""
    x = GOOD.copy()
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for request in (infer_request(raw=x.tobytes()), infer_request(raw=None, typed=x.ravel().tolist())):
            response = stub.ModelInfer(request, timeout=TIMEOUT)
            logits = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 10)
            expected = ort.InferenceSession(str(server[0].plane.registry.models["lenet5-mnist"].path),
                                            providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
            np.testing.assert_array_equal(np.isnan(logits), np.isnan(expected))
            np.testing.assert_allclose(logits[~np.isnan(logits)], expected[~np.isnan(expected)], rtol=0, atol=1e-5)
