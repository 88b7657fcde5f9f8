"""Serving any ONNX model (issue "Your own model, part 2"): real files written here, a real
server on 127.0.0.1, and both real clients (tritonclient and our Predictor / serve.client)."""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tritonclient.grpc as triton
from PIL import Image
from torch import nn
from tritonclient.utils import InferenceServerException

from serve.gen import predictor_pb2 as pb
from tests.own_models import export_classifier, linear_classifier, two_input_model, user_lenet5
from tests.serving import TIMEOUT, predictor_stub, running_server, triton_client

EXAMPLES = Path(__file__).parent.parent / "serve" / "examples"
RGB_SHAPE = (3, 32, 32)
RGB_LABELS = ["red", "green", "blue", "grey", "other"]
RGB_MEAN, RGB_STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


class TinyRGBNet(nn.Module):
    """A CNN of the kind a user writes: 3 x 32 x 32 in, 5 classes out."""

    def __init__(self, channels: int = 3, size: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * (size // 4) ** 2, classes)

    def forward(self, x):  # (N, 3, 32, 32)
        x = self.relu(self.conv(x))  # (N, 4, 32, 32)
        x = self.pool(x)  # (N, 4, 8, 8)
        x = self.flatten(x)  # (N, 256)
        return self.fc(x)  # (N, 5)


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    """One models directory with every kind: flat files (shipped, user-trained, RGB CNN with
    external data, fixed batch 1 without metadata, two inputs) and repository folders (two
    versions; what export --triton-repo writes)."""
    from export.triton import write_model_repository

    root = tmp_path_factory.mktemp("own-models")
    shutil.copy(models_dir / "lenet5-mnist.onnx", root)
    user_lenet5(root, "my-lenet5")
    torch.manual_seed(0)
    export_classifier(TinyRGBNet(), root / "rgb-cnn.onnx", input_shape=RGB_SHAPE, labels=RGB_LABELS,
                      mean=RGB_MEAN, std=RGB_STD, external_data=True)
    linear_classifier(root / "fixed1.onnx", batch=1)
    two_input_model(root / "pair.onnx")
    for version in (1, 2):
        linear_classifier(root / "versioned" / str(version) / "model.onnx", batch="N", seed=version)
    (root / "versioned" / "labels.txt").write_text("zero\none\ntwo\nthree\n")
    write_model_repository(root, "lenet5-triton", onnx.load(str(models_dir / "lenet5-fashion-mnist.onnx")))
    return root


@pytest.fixture(scope="module")
def server(repo):
    with running_server(repo) as (srv, port):
        yield srv, port


@pytest.fixture
def client(server):
    with triton_client(server[1]) as c:
        yield c


def infer_input(name: str, x: np.ndarray, datatype: str = "FP32") -> triton.InferInput:
    tensor = triton.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def test_every_model_is_ready(server):
    registry = server[0].plane.registry
    assert {(m.name, m.version): m.error for m in registry.all_models()} == {
        ("fixed1", "1"): "", ("lenet5-mnist", "1"): "", ("lenet5-triton", "1"): "", ("my-lenet5", "1"): "",
        ("pair", "1"): "", ("rgb-cnn", "1"): "", ("versioned", "1"): "", ("versioned", "2"): ""}


def test_user_lenet5_served_beside_the_shipped_one(server, client, repo, mnist_batch, capsys):
    from serve.client import main

    _, x, labels = mnist_batch
    result = client.infer("my-lenet5", [infer_input("input", x)], client_timeout=TIMEOUT)
    logits = result.as_numpy("logits")
    expected = session(repo / "my-lenet5.onnx").run(["logits"], {"input": x})[0]
    assert logits.shape == (64, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
    assert (logits.argmax(1) == labels).mean() >= 0.98
    assert main(["--server", f"127.0.0.1:{server[1]}", "predict", "my-lenet5", str(EXAMPLES / "digit-7-0.png"),
                 "--top-k", "1"]) == 0
    assert "  7  7" in capsys.readouterr().out


def test_rgb_cnn_from_a_png_and_through_model_infer(server, client, repo, capsys):
    from serve.client import main

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)  # another size: resized to 32 x 32
    data = png(pixels)
    resized = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    x = ((resized.transpose(2, 0, 1)[None].astype(np.float32) / 255 - np.float32(RGB_MEAN).reshape(1, 3, 1, 1))
         / np.float32(RGB_STD).reshape(1, 3, 1, 1)).astype(np.float32)
    expected = session(repo / "rgb-cnn.onnx").run(["logits"], {"input": x})[0]
    with predictor_stub(server[1]) as stub:
        response = stub.Predict(pb.PredictRequest(model="rgb-cnn", images=pb.EncodedImages(images=[data]), top_k=5),
                                timeout=TIMEOUT)
        info = stub.GetModel(pb.GetModelRequest(model="rgb-cnn"), timeout=TIMEOUT)
    logits = np.array([response.predictions[0].logits], np.float32)
    assert logits.shape == (1, 5)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    assert [s.label for s in response.predictions[0].top_k][0] == RGB_LABELS[int(expected.argmax())]
    assert list(info.labels) == RGB_LABELS and list(info.input_shape) == [-1, 3, 32, 32]
    batch = rng.standard_normal((3, *RGB_SHAPE)).astype(np.float32)
    result = client.infer("rgb-cnn", [infer_input("input", batch)], client_timeout=TIMEOUT)
    np.testing.assert_allclose(result.as_numpy("logits"), session(repo / "rgb-cnn.onnx").run(None, {"input": batch})[0],
                               rtol=0, atol=1e-5)
    meta = client.get_model_metadata("rgb-cnn", as_json=True, client_timeout=TIMEOUT)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "3", "32", "32"]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": ["-1", "5"]}]
    path = repo / "rgb-cnn.png"
    path.write_bytes(data)
    assert main(["--server", f"127.0.0.1:{server[1]}", "predict", "rgb-cnn", str(path), "--top-k", "1"]) == 0
    assert RGB_LABELS[int(expected.argmax())] in capsys.readouterr().out


def test_external_data_resolves_beside_the_model(server, repo):
    assert (repo / "rgb-cnn.onnx.data").is_file() and Path.cwd() != repo
    model = server[0].plane.registry.get("rgb-cnn")
    assert model.ready and model.path == repo / "rgb-cnn.onnx"


def test_missing_or_escaping_external_data_is_one_line(tmp_path):
    from serve.core.registry import ModelRegistry

    torch.manual_seed(0)
    models = tmp_path / "models"
    export_classifier(TinyRGBNet(), models / "missing.onnx", input_shape=RGB_SHAPE, labels=RGB_LABELS,
                      mean=RGB_MEAN, std=RGB_STD, external_data=True)
    (models / "missing.onnx.data").unlink()
    proto = onnx.load(str(linear_classifier(tmp_path / "plain.onnx", batch=1)[0]))
    for tensor in proto.graph.initializer:  # point every weight outside the models directory
        onnx.external_data_helper.set_external_data(tensor, location="../outside.data", offset=0,
                                                    length=len(tensor.raw_data) or 4)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
    (tmp_path / "outside.data").write_bytes(b"\0" * 4096)
    (models / "escaping.onnx").write_bytes(proto.SerializeToString())
    registry = ModelRegistry.load_dir(models, "cpu")
    for name in ("missing", "escaping"):
        error = registry.models[name].error
        assert not registry.models[name].ready and "\n" not in error
        assert error.startswith(f"{models / name}.onnx: cannot load as an ONNX model"), error
    assert "missing.onnx.data" in registry.models["missing"].error
    assert "outside.data" in registry.models["escaping"].error


def test_fixed_batch_1_without_metadata(server, client, repo):
    path = repo / "fixed1.onnx"
    x = np.random.default_rng(2).standard_normal((1, 1, 8, 8)).astype(np.float32)
    result = client.infer("fixed1", [infer_input("x", x)], client_timeout=TIMEOUT)
    np.testing.assert_allclose(result.as_numpy("y"), session(path).run(None, {"x": x})[0], rtol=0, atol=1e-5)
    config = client.get_model_config("fixed1", as_json=True, client_timeout=TIMEOUT)["config"]
    assert config.get("max_batch_size", 0) == 0 and config["input"][0]["dims"] == ["1", "1", "8", "8"]
    assert "dynamic_batching" not in config
    meta = client.get_model_metadata("fixed1", as_json=True, client_timeout=TIMEOUT)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["1", "1", "8", "8"]}]
    with pytest.raises(InferenceServerException) as info:
        client.infer("fixed1", [infer_input("x", np.zeros((2, 1, 8, 8), np.float32))], client_timeout=TIMEOUT)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "inputs[0].shape: shape [2, 1, 8, 8] does not match input 'x', which takes [1, 1, 8, 8]" in info.value.message()
    images = [np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8) for i in range(3)]
    with predictor_stub(server[1]) as stub:
        response = stub.Predict(pb.PredictRequest(model="fixed1", images=pb.EncodedImages(
            images=[png(image) for image in images]), top_k=4), timeout=TIMEOUT)
    assert len(response.predictions) == 3
    for image, prediction in zip(images, response.predictions):
        expected = session(path).run(None, {"x": (image / np.float32(255)).astype(np.float32)[None, None]})[0][0]
        np.testing.assert_allclose(np.array(prediction.logits, np.float32), expected, rtol=0, atol=1e-5)
        assert sorted(s.label for s in prediction.top_k) == ["0", "1", "2", "3"]  # class indices as labels
    batch = np.stack([image[None] for image in images])  # (3, 1, 8, 8) raw pixels, as one tensor
    with predictor_stub(server[1]) as stub:
        response = stub.Predict(pb.PredictRequest(model="fixed1", tensor=pb.Tensor(
            shape=list(batch.shape), dtype=pb.DTYPE_UINT8, data=batch.tobytes())), timeout=TIMEOUT)
    expected = np.concatenate([session(path).run(None, {"x": (b / np.float32(255)).astype(np.float32)[None]})[0]
                               for b in batch])
    np.testing.assert_allclose(np.array([p.logits for p in response.predictions], np.float32), expected,
                               rtol=0, atol=1e-5)
    stats = client.get_inference_statistics("fixed1", as_json=True, client_timeout=TIMEOUT)["model_stats"][0]
    assert {b["batch_size"] for b in stats["batch_stats"]} == {"1"}  # one image per run, always


def test_two_inputs_through_kserve_and_predict_refused(server, client):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 3), np.float32)
    n = np.array([3, 4], np.int64)
    result = client.infer("pair", [infer_input("a", a), infer_input("b", b), infer_input("n", n, "INT64")],
                          client_timeout=TIMEOUT)
    np.testing.assert_allclose(result.as_numpy("sum"), a + b, rtol=0, atol=0)
    assert result.as_numpy("count").dtype == np.int64 and result.as_numpy("count").tolist() == [6, 8]
    with pytest.raises(InferenceServerException) as info:
        client.infer("pair", [infer_input("a", a), infer_input("b", b), infer_input("n", n.astype(np.int32), "INT32")],
                     client_timeout=TIMEOUT)
    assert "inputs[2].datatype: 'INT32' is not supported for input 'n'; expected INT64" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.infer("pair", [infer_input("a", a), infer_input("b", b)], client_timeout=TIMEOUT)
    assert "inputs: 2 tensors given; pair takes 3 ('a', 'b', 'n')" in info.value.message()
    outputs = [triton.InferRequestedOutput("count"), triton.InferRequestedOutput("sum", class_count=2)]
    response = client.infer("pair", [infer_input("a", a), infer_input("b", b), infer_input("n", n, "INT64")],
                            outputs=outputs, client_timeout=TIMEOUT).get_response()
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [  # in the order asked for
        ("count", "INT64", [2]), ("sum", "BYTES", [2, 2])]
    with predictor_stub(server[1]) as stub:
        with pytest.raises(grpc.RpcError) as rpc:
            stub.Predict(pb.PredictRequest(model="pair", images=pb.EncodedImages(images=[b"x"])), timeout=TIMEOUT)
    assert rpc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not an image classifier" in rpc.value.details() and "ModelInfer" in rpc.value.details()


def test_two_versions_latest_by_default_any_by_request(server, client, repo):
    x = np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32)
    expected = {v: session(repo / "versioned" / v / "model.onnx").run(None, {"x": x})[0] for v in ("1", "2")}
    for version, want in (("", "2"), ("1", "1"), ("2", "2")):
        result = client.infer("versioned", [infer_input("x", x)], model_version=version, client_timeout=TIMEOUT)
        assert result.get_response().model_version == want
        np.testing.assert_allclose(result.as_numpy("y"), expected[want], rtol=0, atol=1e-5)
        with predictor_stub(server[1]) as stub:
            response = stub.Predict(pb.PredictRequest(model="versioned", version=version, tensor=pb.Tensor(
                shape=list(x.shape), dtype=pb.DTYPE_FLOAT32, data=x.tobytes()), top_k=1), timeout=TIMEOUT)
        assert response.version == want
        np.testing.assert_allclose(np.array([p.logits for p in response.predictions], np.float32), expected[want],
                                   rtol=0, atol=1e-5)
        assert response.predictions[0].top_k[0].label in ("zero", "one", "two", "three")  # from labels.txt
    assert client.is_model_ready("versioned", "1", client_timeout=TIMEOUT)
    index = client.get_model_repository_index(as_json=True, client_timeout=TIMEOUT)["models"]
    assert [(m["name"], m["version"]) for m in index if m["name"] == "versioned"] == [("versioned", "1"),
                                                                                      ("versioned", "2")]
    with pytest.raises(InferenceServerException) as info:
        client.infer("versioned", [infer_input("x", x)], model_version="3", client_timeout=TIMEOUT)
    assert "model 'versioned' has no version '3'; available: 1, 2" in info.value.message()


def test_the_repository_export_writes(client, mnist_batch):
    config = client.get_model_config("lenet5-triton", as_json=True, client_timeout=TIMEOUT)["config"]
    assert json.loads(config["parameters"]["labels"]["string_value"])[9] == "Ankle boot"  # labels.txt
    _, x, _ = mnist_batch
    result = client.infer("lenet5-triton", [infer_input("input", x[:4])], client_timeout=TIMEOUT)
    assert result.as_numpy("logits").shape == (4, 10)


def test_fixed_batch_1_under_8_concurrent_clients(server):
    """Every valid request answered OK: a fixed-batch model is never batched with others."""
    port, rng = server[1], np.random.default_rng(4)
    images = [png(rng.integers(0, 256, (8, 8), dtype=np.uint8)) for _ in range(2)]
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    codes: list[str] = []
    lock = threading.Lock()

    def client_thread(i: int) -> None:
        c = triton.InferenceServerClient(f"127.0.0.1:{port}")
        with predictor_stub(port) as stub:
            for j in range(25):
                try:
                    if (i + j) % 2:
                        c.infer("fixed1", [infer_input("x", x)], client_timeout=TIMEOUT)
                    else:
                        stub.Predict(pb.PredictRequest(model="fixed1", images=pb.EncodedImages(images=images)),
                                     timeout=TIMEOUT)
                    code = "OK"
                except (InferenceServerException, grpc.RpcError) as e:
                    code = str(e)
                with lock:
                    codes.append(code)
        c.close()

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == ["OK"] * 200


def test_labels_count_mismatch_is_a_load_error(tmp_path):
    from serve.core.registry import ModelRegistry

    linear_classifier(tmp_path / "m" / "1" / "model.onnx", batch="N")
    (tmp_path / "m" / "labels.txt").write_text("a\nb\n")
    registry = ModelRegistry.load_dir(tmp_path, "cpu")
    assert "labels.txt names 2 classes, but output 'y' has 4" in registry.models["m"].error


def test_config_pbtxt_version_policy_and_parse_errors(tmp_path):
    from serve.core.registry import ModelRegistry

    for version in (1, 2, 3):
        linear_classifier(tmp_path / "latest" / str(version) / "model.onnx", batch="N", seed=version)
        linear_classifier(tmp_path / "chosen" / str(version) / "model.onnx", batch="N", seed=version)
    (tmp_path / "latest" / "config.pbtxt").write_text('name: "latest"\nplatform: "onnxruntime_onnx"\n'
                                                     "version_policy: { latest: { num_versions: 2 } }\n")
    (tmp_path / "chosen" / "config.pbtxt").write_text("version_policy: { specific: { versions: [1, 3] } }\n")
    linear_classifier(tmp_path / "broken" / "1" / "model.onnx", batch="N")
    (tmp_path / "broken" / "config.pbtxt").write_text("max_batch_size: [oops\n")
    registry = ModelRegistry.load_dir(tmp_path, "cpu")
    assert sorted(registry.versions["latest"]) == ["2", "3"]
    assert sorted(registry.versions["chosen"]) == ["1", "3"]
    error = registry.models["broken"].error
    assert error.startswith(f"{tmp_path / 'broken' / 'config.pbtxt'}: cannot read it as a ModelConfig") and "\n" not in error
