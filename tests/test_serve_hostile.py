"""Property-based hostile input against a live server, both APIs: every request gets a
well-formed status (never UNKNOWN or INTERNAL for a client's mistake), and the server
stays healthy and keeps answering correctly afterwards."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc

from serve.core import Limits
from serve.gen import predictor_pb2 as pb
from serve.gen import predictor_pb2_grpc
from tests.serving import TIMEOUT, running_server

EXAMPLES = 250  # per API
CLIENT_MISTAKE_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OK}
COUNTS = {"predictor": 0, "kserve": 0}

dims = st.one_of(st.integers(-3, 3), st.sampled_from([0, 1, 28, 2**31 - 1, 2**40, -(2**40)]),
                 st.integers(-(2**62), 2**62))
shapes = st.one_of(st.lists(dims, max_size=6), st.sampled_from([[1, 1, 28, 28], [2, 28, 28], [3, 1, 28, 28]]))
special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e38, -1e-45])
model_names = st.one_of(st.sampled_from(["lenet5-mnist", "lenet5-fashion-mnist", "", "../x", "lenet5"]),
                        st.text(max_size=300))


@st.composite
def payloads(draw, shape):
    """Bytes for `shape`: right-sized (possibly with specials), or any random length."""
    n = int(np.prod(shape)) if shape and all(0 <= d <= 4096 for d in shape) else -1
    if n >= 0 and n <= 4 * 784 and draw(st.booleans()):
        values = np.asarray(draw(st.lists(st.one_of(st.floats(-5, 5, width=32), special), min_size=n, max_size=n)),
                            dtype=np.float32)
        return values.tobytes()
    return draw(st.binary(max_size=4 * 784 * 4 + 8))


@st.composite
def predict_requests(draw):
    request = pb.PredictRequest(model=draw(model_names), version=draw(st.sampled_from(["", "1", "2", "x" * 500])),
                                top_k=draw(st.integers(-(2**31), 2**31 - 1)))
    kind = draw(st.sampled_from(["tensor", "images", "none"]))
    if kind == "tensor":
        shape = draw(shapes)
        request.tensor.shape.extend(shape)
        request.tensor.dtype = draw(st.integers(-5, 5))
        request.tensor.data = draw(payloads(shape))
    elif kind == "images":
        images = draw(st.lists(st.one_of(st.binary(max_size=2000), st.just(b"\x89PNG\r\n\x1a\n" + b"\0" * 30),
                                         st.just(b"\xff\xd8\xff\xe0" + b"\0" * 30)), max_size=4))
        request.images.images.extend(images)
    data = request.SerializeToString()
    if draw(st.booleans()):  # an unknown field (number 99, length-delimited) the server must ignore
        data += b"\x9a\x06" + bytes([3]) + b"abc"
    return data


@st.composite
def infer_requests(draw):
    request = service_pb2.ModelInferRequest(model_name=draw(model_names), model_version=draw(st.sampled_from(["", "1", "9"])),
                                            id=draw(st.text(max_size=50)))
    for _ in range(draw(st.integers(0, 2))):
        shape = draw(shapes)
        tensor = request.inputs.add(name=draw(st.sampled_from(["input", "x", ""])),
                                    datatype=draw(st.sampled_from(["FP32", "UINT8", "FP16", "BYTES", "", "INT64"])),
                                    shape=shape)
        if draw(st.booleans()):
            request.raw_input_contents.append(draw(payloads(shape)))
        else:
            tensor.contents.fp32_contents.extend(draw(st.lists(st.one_of(st.floats(width=32), special), max_size=800)))
            tensor.contents.uint_contents.extend(draw(st.lists(st.integers(0, 2**32 - 1), max_size=5)))
    for _ in range(draw(st.integers(0, 2))):
        out = request.outputs.add(name=draw(st.sampled_from(["logits", "probs", ""])))
        if draw(st.booleans()):
            out.parameters["classification"].int64_param = draw(st.integers(-(2**63), 2**63 - 1))
    data = request.SerializeToString()
    if draw(st.booleans()):
        data += b"\x9a\x06" + bytes([3]) + b"abc"
    return data


@pytest.fixture(scope="module")
def channel(models_dir):
    with running_server(models_dir, limits=Limits(max_request_images=64)) as (_, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch


def raw_call(channel, method: str, data: bytes):
    call = channel.unary_unary(method)
    try:
        call(data, timeout=TIMEOUT)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                             HealthCheck.data_too_large])


@HYPOTHESIS
@given(data=predict_requests())
def test_predictor_survives_hostile_requests(channel, data):
    COUNTS["predictor"] += 1
    code, details = raw_call(channel, "/zoo.v1.Predictor/Predict", data)
    assert code in CLIENT_MISTAKE_CODES, (code, details)


@HYPOTHESIS
@given(data=infer_requests())
def test_kserve_survives_hostile_requests(channel, data):
    COUNTS["kserve"] += 1
    code, details = raw_call(channel, "/inference.GRPCInferenceService/ModelInfer", data)
    assert code in CLIENT_MISTAKE_CODES, (code, details)


def test_still_healthy_and_correct_afterwards(channel, mnist_batch):
    if any(COUNTS.values()):  # when the property tests ran in this session, they ran in full
        assert COUNTS["predictor"] >= EXAMPLES and COUNTS["kserve"] >= EXAMPLES
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    _, x, labels = mnist_batch
    response = predictor_pb2_grpc.PredictorStub(channel).Predict(pb.PredictRequest(
        model="lenet5-mnist", tensor=pb.Tensor(shape=[64, 1, 28, 28], dtype=pb.DTYPE_FLOAT32, data=x.tobytes())),
        timeout=TIMEOUT)
    assert (np.array([p.top_k[0].index for p in response.predictions]) == labels).mean() >= 0.98
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=TIMEOUT).ready
