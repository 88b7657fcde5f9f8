"""`python -m export --all` end to end, then every exported file through other runtimes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format

from export.__main__ import main
from export.metadata import INPUT_NAME, KEYS, OUTPUT_NAME, read_metadata
from export.test_data import read_tensor
from zoo.datasets import get_dataset_info
from zoo.weights import read_card, shipped

PAIRS = sorted(shipped())


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("models")
    triton = tmp_path_factory.mktemp("triton")
    code = main(["--all", "--out", str(out), "--triton-repo", str(triton), "--data-dir", str(data_dir)])
    assert code == 0
    return out, triton


def load_pair(exported, model, dataset):
    out, _ = exported
    name = f"{model}-{dataset}"
    return onnx.load(out / f"{name}.onnx"), json.loads((out / f"{name}.report.json").read_text())


@pytest.mark.parametrize("model,dataset", PAIRS)
def test_report_records_every_check(exported, model, dataset):
    _, report = load_pair(exported, model, dataset)
    assert report["passed"] is True
    assert set(report["batch_axis"]["max_abs_vs_torch"]) == {"1", "7", "64"}
    assert all(n["ok"] for n in report["nodes"])
    assert {n["op_type"] for n in report["nodes"]} >= {"Conv", "Gemm"}
    parity = report["test_set"]
    assert parity["images"] == 10_000
    assert set(parity["top1_agreement"].values()) == {1.0}
    assert max(parity["max_abs_logit_diff"].values()) <= 1e-4


@pytest.mark.parametrize("model,dataset", PAIRS)
def test_every_exported_file_passes_verify(exported, model, dataset):
    from export.verify import verify

    out, _ = exported
    result = verify(out / f"{model}-{dataset}.onnx", strict=True)
    assert result.passed, result.failures
    assert result.nodes and all(n.status == "ok" for n in result.nodes)
    assert [(g.runtime, g.ok) for g in result.goldens] == [("onnxruntime", True), ("reference", True)]


@pytest.mark.parametrize("model,dataset", PAIRS)
def test_metadata_travels_inside_the_file(exported, model, dataset):
    proto, _ = load_pair(exported, model, dataset)
    meta = read_metadata(proto)
    assert set(meta) == set(KEYS)
    info, card = get_dataset_info(dataset), read_card(model, dataset)
    assert (meta["model"], meta["dataset"], meta["source"]) == (model, dataset, "shipped")
    assert json.loads(meta["labels"]) == list(info.classes)
    assert json.loads(meta["input_shape"]) == [-1, 1, 28, 28]
    assert float(meta["mean"]) == info.mean and float(meta["std"]) == info.std
    assert float(meta["pixel_scale"]) == pytest.approx(1 / 255)
    assert meta["weights_sha256"] == card["weights_sha256"]
    assert float(meta["test_accuracy"]) == card["test_accuracy"]
    assert json.loads(meta["recipe"]) == card["recipe"]
    assert {"train", "export"} == set(json.loads(meta["versions"]))
    assert proto.graph.input[0].name == INPUT_NAME and proto.graph.output[0].name == OUTPUT_NAME
    node_keys = {p.key for n in proto.graph.node for p in n.metadata_props}
    assert "pkg.torch.onnx.stack_trace" not in node_keys  # no paths of the exporting machine
    assert b"/zoo/models.py" not in proto.SerializeToString()


def run_ort(proto, x):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


@pytest.mark.parametrize("model,dataset", PAIRS)
def test_model_zoo_test_data_holds_torch_outputs(exported, model, dataset):
    out, _ = exported
    proto, _ = load_pair(exported, model, dataset)
    folder = out / f"{model}-{dataset}" / "test_data_set_0"
    x, expected = read_tensor(folder / "input_0.pb"), read_tensor(folder / "output_0.pb")
    assert x.shape == (8, 1, 28, 28) and expected.shape == (8, 10)
    assert x.dtype == np.float32 and expected.dtype == np.float32
    np.testing.assert_allclose(run_ort(proto, x), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("model,dataset", PAIRS)
def test_onnx_reference_evaluator_agrees(exported, model, dataset):
    from onnx.reference import ReferenceEvaluator

    out, _ = exported
    proto, _ = load_pair(exported, model, dataset)
    x = read_tensor(out / f"{model}-{dataset}" / "test_data_set_0" / "input_0.pb")
    (got,) = ReferenceEvaluator(proto).run(None, {INPUT_NAME: x})
    assert got.shape == (8, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, run_ort(proto, x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("model,dataset", PAIRS)
def test_opencv_dnn_agrees(exported, model, dataset):
    import cv2

    out, _ = exported
    path = out / f"{model}-{dataset}.onnx"
    x = read_tensor(out / f"{model}-{dataset}" / "test_data_set_0" / "input_0.pb")
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(x)
    got = net.forward()
    assert got.shape == (8, 10)
    np.testing.assert_allclose(got, run_ort(onnx.load(path), x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("model,dataset", PAIRS)
def test_triton_repository_parses_as_model_config(exported, model, dataset):
    from tritonclient.grpc import model_config_pb2

    out, triton = exported
    name = f"{model}-{dataset}"
    config = text_format.Parse((triton / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size > 0  # variable batch: dims exclude it
    assert list(config.input[0].dims) == [1, 28, 28] and config.input[0].name == INPUT_NAME
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert list(config.output[0].dims) == [10] and config.output[0].label_filename == "labels.txt"
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    labels = (triton / name / "labels.txt").read_text().splitlines()
    assert labels == list(get_dataset_info(dataset).classes)
    assert (triton / name / "1" / "model.onnx").read_bytes() == (out / f"{name}.onnx").read_bytes()


def test_gpu_instance_group(tmp_path, exported):
    from export.triton import write_model_repository
    from tritonclient.grpc import model_config_pb2

    proto, _ = load_pair(exported, "lenet5", "mnist")
    folder = write_model_repository(tmp_path, "lenet5-mnist", proto, device="gpu")
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU


@pytest.mark.parametrize(
    "argv,message",
    [
        (["lenet6"], "unknown model 'lenet6'; valid models: lenet5, lenet5-classic"),
        (["lenet5", "--dataset", "cifar"], "unknown dataset 'cifar'; valid datasets: fashion-mnist, mnist"),
        (["lenet5", "--opset", "9"], "opset 9 is not supported; use 17 to"),
        (["lenet5", "--all"], "give a model name or --all, not both"),
        ([], "name a model"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
