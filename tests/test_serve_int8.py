"""An int8 file is served like any other: KServe over gRPC and HTTP (tritonclient) answer
what onnxruntime computes in-process, Predict reads its metadata, and the playground's
feature maps of a QDQ model are the dequantized values the int8 model carries."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from onnx import numpy_helper

import serve
from export.int8 import write_unchecked_int8
from serve.gen import predictor_pb2 as pb
from tests.http_serving import running_both
from tests.serving import TIMEOUT, predictor_stub

INT8 = "lenet5-mnist-int8"
DIGIT = Path(serve.__file__).parent / "examples" / "digit-7-0.png"


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, models_dir, data_dir):
    """lenet5-mnist.onnx and, quantized from it as --int8 does (200 calibration images,
    unchecked: tests/test_export_int8.py checks the real export), lenet5-mnist-int8.onnx."""
    folder = tmp_path_factory.mktemp("int8")
    shutil.copy(models_dir / "lenet5-mnist.onnx", folder)
    write_unchecked_int8(folder / "lenet5-mnist.onnx", calibration_images=200, data_dir=data_dir)
    return folder


@pytest.fixture(scope="module")
def server(int8_dir):
    with running_both(int8_dir) as running:
        yield running


def in_process(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


@pytest.mark.parametrize("batch", [1, 64])
def test_kserve_grpc_and_http_answer_what_onnxruntime_computes(server, int8_dir, mnist_batch, batch):
    _, grpc_port, http_port = server
    x = mnist_batch[1][:batch]
    expected = in_process(int8_dir / f"{INT8}.onnx", x)
    got = {}
    clients = {"grpc": (tgrpc, tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}"), {"client_timeout": TIMEOUT}),
               "http": (thttp, thttp.InferenceServerClient(f"127.0.0.1:{http_port}", network_timeout=TIMEOUT), {})}
    for name, (module, client, timeout) in clients.items():
        try:
            assert client.is_model_ready(INT8)
            tensor = module.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            got[name] = client.infer(INT8, [tensor], **timeout).as_numpy("logits")
        finally:
            client.close()
    for name, logits in got.items():
        assert logits.shape == (batch, 10) and logits.dtype == np.float32, name
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-6, err_msg=name)
    # the int8 file's answers, not the float file's: logits on its output's quantization grid
    step = output_scale(int8_dir / f"{INT8}.onnx")
    np.testing.assert_allclose(got["grpc"] / step, np.rint(got["grpc"] / step), rtol=0, atol=1e-3)
    float_logits = in_process(int8_dir / "lenet5-mnist.onnx", x)
    assert (got["grpc"].argmax(1) == float_logits.argmax(1)).mean() >= 0.98


def output_scale(path: Path) -> float:
    proto = onnx.load(path)
    last = next(n for n in proto.graph.node if "logits" in n.output)
    assert last.op_type == "DequantizeLinear"
    return float(next(numpy_helper.to_array(i) for i in proto.graph.initializer if i.name == last.input[1]))


def test_predict_reads_the_int8_files_metadata(server):
    _, grpc_port, _ = server
    with predictor_stub(grpc_port) as stub:
        reply = stub.Predict(pb.PredictRequest(model=INT8, images=pb.EncodedImages(images=[DIGIT.read_bytes()]), top_k=1), timeout=TIMEOUT)
    assert reply.predictions[0].top_k[0].label == "7"


def test_feature_maps_of_a_qdq_model_are_its_dequantized_values(server, int8_dir):
    _, _, http_port = server
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/{INT8}/features",
                                     data=DIGIT.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        body = json.loads(response.read())
    layers = body["layers"]
    assert [layer["op"] for layer in layers] == ["Conv", "MaxPool", "Conv", "MaxPool"]
    x = np.asarray(body["input"]["data"], np.float32).reshape(body["input"]["shape"])
    # what each layer's QuantizeLinear -> DequantizeLinear pair makes of it, in-process
    proto = onnx.load(int8_dir / f"{INT8}.onnx")
    dequantized = [dequantized_output(proto, node) for node in proto.graph.node if node.op_type in ("Conv", "MaxPool")]
    graph_outputs = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.ValueInfoProto(name=name) for name, _ in dequantized if name not in graph_outputs)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run([name for name, _ in dequantized], {"input": x})
    for layer, want, (name, scale) in zip(layers, expected, dequantized):
        got = np.asarray(layer["data"], np.float32).reshape(layer["shape"])
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=name)
        steps = got / scale  # on the quantization grid: whole steps from the zero point 0
        np.testing.assert_allclose(steps, np.rint(steps), rtol=0, atol=1e-3, err_msg=name)
        assert got.min() >= 0  # the ReLU after each convolution is the zero point of its quantization


def dequantized_output(proto: onnx.ModelProto, node: onnx.NodeProto) -> tuple[str, float]:
    """(the DequantizeLinear output after `node`'s QuantizeLinear, its scale)."""
    quantize = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == node.output[0])
    dequantize = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == quantize.output[0])
    scale = next(numpy_helper.to_array(i) for i in proto.graph.initializer if i.name == dequantize.input[1])
    return dequantize.output[0], float(scale)
