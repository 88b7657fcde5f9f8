"""`python -m export lenet5 --int8` end to end (the one model CI quantizes; all eight in the
bench's run), what the int8 file carries and who can run it, the custom-model path, and an
int8 file that loses too much accuracy is not written."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from onnx import numpy_helper
from PIL import Image

from export.__main__ import main
from export.int8 import INT8_KEYS, CalibrationSet
from export.int8_checks import MAX_ACCURACY_DROP
from export.metadata import KEYS, read_metadata
from export.quantized import QUANT_STEPS
from export.test_data import read_tensor
from export.verify import verify
from tests.test_export_cli import LEAN, run_without

NAME, INT8 = "lenet5-mnist", "lenet5-mnist-int8"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir):
    """(models folder, Triton repository, what the command printed)."""
    out, triton = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("triton")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["lenet5", "--int8", "--out", str(out), "--triton-repo", str(triton), "--data-dir", str(data_dir)])
    assert code == 0, printed.getvalue()
    return out, triton, printed.getvalue()


def report_of(out, name=INT8) -> dict:
    return json.loads((out / f"{name}.report.json").read_text())


def test_the_command_prints_both_files_checks(exported):
    out, _, printed = exported
    lines = printed.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(INT8)))
    assert lines[start] == f"{INT8}  (opset 19; int8 of {NAME}.onnx, shipped weights)"
    assert lines[start + 1].startswith("  quantized   static QDQ, uint8 activations per tensor, int8 weights per "
                                       "output channel within +-64; calibrated on 1,000 mnist training images")
    assert "the 10,000 mnist test images: accuracy" in printed and "top-1 agreement with the float file" in printed
    assert lines[-1] == "all 2 exports passed every check"
    assert sorted(p.name for p in out.iterdir()) == sorted([NAME, f"{NAME}.onnx", f"{NAME}.report.json", INT8,
                                                            f"{INT8}.onnx", f"{INT8}.report.json"])


def test_the_report_records_every_check_in_quantization_steps(exported):
    out, _, _ = exported
    report = report_of(out)
    assert report["passed"] is True and report["opset"] == 19 and report["precision"] == "int8"
    assert report["calibration"] == {"description": "1,000 mnist training images (a seeded random sample, seed 0)",
                                     "images": 1000}
    assert set(report["batch_axis"]["steps_vs_reference"]) == {"1", "7", "64"}
    assert max(report["batch_axis"]["steps_vs_reference"].values()) <= QUANT_STEPS
    nodes = report["nodes"]
    assert all(n["ok"] for n in nodes)
    quantized = [n for n in nodes if n["unit"] == "steps"]
    assert {n["op_type"] for n in quantized} == {"QuantizeLinear"} and len(quantized) >= 8
    assert {n["op_type"] for n in nodes} >= {"Conv", "Gemm", "MaxPool", "DequantizeLinear"}
    test_set = report["test_set"]
    assert test_set["images"] == 10_000
    accuracy = test_set["accuracy"]
    assert accuracy["float"] == report_of(out, NAME)["test_set"]["accuracy"]["onnxruntime"]
    assert accuracy["float"] - accuracy["int8"] <= MAX_ACCURACY_DROP
    assert test_set["top1_agreement_with_float"] >= 0.99
    fused = test_set["fused_vs_reference_steps"]  # every tensor the fused kernels write, and the logits
    assert len(fused) >= 9 and max(fused.values()) <= QUANT_STEPS
    assert report["onnx_bytes"] * 3 < report["float_onnx_bytes"]  # a third of the size, or less


def test_metadata_is_the_float_files_plus_the_quantization(exported):
    out, _, _ = exported
    proto, float_proto = onnx.load(out / f"{INT8}.onnx"), onnx.load(out / f"{NAME}.onnx")
    meta, float_meta = read_metadata(proto), read_metadata(float_proto)
    assert set(meta) == set(KEYS) | set(INT8_KEYS)
    assert {k: v for k, v in meta.items() if k in KEYS and k != "test_accuracy"} == {
        k: v for k, v in float_meta.items() if k != "test_accuracy"}
    accuracy = report_of(out)["test_set"]["accuracy"]
    assert float(meta["test_accuracy"]) == accuracy["int8"] and float(meta["float_accuracy"]) == accuracy["float"]
    assert float(meta["accuracy_change"]) == pytest.approx(accuracy["int8"] - accuracy["float"])
    assert meta["float_model"] == f"{NAME}.onnx"
    assert meta["float_sha256"] == hashlib.sha256((out / f"{NAME}.onnx").read_bytes()).hexdigest()
    assert meta["calibration_images"] == "1000" and meta["checked_on"] == "the 10,000 mnist test images"
    scheme = json.loads(meta["quantization"])
    assert scheme["weights"].startswith("int8, symmetric, per output channel") and "reduce_range" in scheme["weights"]
    assert scheme["quantizer"] == f"onnxruntime.quantization.quantize_static {ort.__version__}"


def test_the_graph_is_the_stated_scheme(exported):
    out, _, _ = exported
    proto = onnx.load(out / f"{INT8}.onnx")
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import} == {"ai.onnx": 19}
    values = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    dequantized_weights = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and
                           values.get(n.input[0], np.zeros(0)).dtype == np.int8]
    assert len(dequantized_weights) == 5  # conv1, conv2, fc1, fc2, fc3
    for node in dequantized_weights:
        weights, scale, zero = (values[name] for name in node.input)
        assert weights.min() >= -64 and weights.max() <= 64  # 255 * 64 * 2 < 2**15: no u8 x s8 pair saturates
        assert scale.shape == (weights.shape[0],) and not zero.any()  # per output channel, symmetric
    activations = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert all(values[n.input[2]].dtype == np.uint8 and values[n.input[1]].shape == () for n in activations)


def test_the_int8_file_verifies_with_its_own_goldens(exported):
    out, _, _ = exported
    result = verify(out / f"{INT8}.onnx", strict=True)
    assert result.passed, result.failures
    assert all(n.status == "ok" for n in result.nodes)
    assert [(g.runtime, g.ok) for g in result.goldens] == [("onnxruntime", True), ("reference", True)]
    assert len(result.fused) >= 9 and all(f.ok for f in result.fused)
    folder = out / INT8 / "test_data_set_0"
    x, golden = read_tensor(folder / "input_0.pb"), read_tensor(folder / "output_0.pb")
    session = ort.InferenceSession(str(out / f"{INT8}.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(["logits"], {"input": x})[0], golden)  # the int8 file's own answers


def test_onnx_reference_evaluator_runs_it_within_a_step(exported):
    from onnx.reference import ReferenceEvaluator

    out, _, _ = exported
    proto = onnx.load(out / f"{INT8}.onnx")
    folder = out / INT8 / "test_data_set_0"
    x, golden = read_tensor(folder / "input_0.pb"), read_tensor(folder / "output_0.pb")
    (got,) = ReferenceEvaluator(proto).run(None, {"input": x})
    step = report_of(out)["batch_axis"]["logits_step"]
    assert got.shape == golden.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, golden, rtol=0, atol=QUANT_STEPS * step * 1.001)


def test_the_triton_repository_holds_the_int8_model_too(exported):
    from tritonclient.grpc import model_config_pb2

    out, triton, _ = exported
    config = text_format.Parse((triton / INT8 / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == INT8 and config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert (triton / INT8 / "1" / "model.onnx").read_bytes() == (out / f"{INT8}.onnx").read_bytes()


def test_an_int8_file_that_loses_too_much_accuracy_is_not_written(exported, tmp_path, test_split):
    """Calibrated on blank images, every stroke saturates: the export fails naming the loss,
    and only its report is written."""
    from export.int8_export import export_int8
    from export.pipeline import CheckInputs, ExportResult, WriteOptions
    from zoo.data import normalize

    out, _, _ = exported
    split = test_split("mnist")
    inputs = CheckInputs(normalize(split.images[:1000], split.info), split.labels[:1000],
                         "1,000 mnist test images", "test set")
    blank = CalibrationSet(normalize(np.zeros((8, 28, 28), np.uint8), split.info), "8 blank images")
    float_result = ExportResult(NAME, passed=True, report={"source": "shipped", "model": "lenet5"})
    result = export_int8(float_result, onnx.load(out / f"{NAME}.onnx"), inputs, lambda: blank,
                         WriteOptions(tmp_path), num_classes=10, opset=18)
    assert not result.passed
    assert result.failure.startswith("test set: int8 accuracy ") and "points below the float file's" in result.failure
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{INT8}.report.json"]


def write_digits(folder, images, labels) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i}.png")


def test_a_custom_model_with_int8_and_its_own_calibration(tmp_path, test_split, capsys, monkeypatch):
    """python -m export custom ... --int8 --calibration: the shipped LeNet-5 weights as a
    user's module, checked on labelled sample images, calibrated on an .npy of others."""
    from zoo.datasets import get_dataset_info
    from zoo.weights import stem, weights_dir

    split, info = test_split("mnist"), get_dataset_info("mnist")
    write_digits(tmp_path / "samples", split.images[:200], split.labels[:200])
    np.save(tmp_path / "calibration.npy", split.images[200:300, None])  # raw uint8 pixels
    monkeypatch.chdir(tmp_path)
    code = main(["custom", "zoo.models:LeNet5", "--weights", str(weights_dir() / f"{stem('lenet5', 'mnist')}.safetensors"),
                 "--input-shape", "1,28,28", "--labels", ",".join(info.classes), "--mean", str(info.mean),
                 "--std", str(info.std), "--samples", "samples", "--name", "digits", "--int8",
                 "--calibration", "calibration.npy", "--calibration-images", "64"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = report_of(tmp_path / "models", "digits-int8")
    assert report["source"] == "custom" and report["calibration"]["description"] == (
        "64 of 100 raw uint8 inputs from calibration.npy")
    assert report["checked_on"].startswith("200 images from samples in class-named subfolders")
    accuracy = report["test_set"]["accuracy"]
    assert accuracy["float"] - accuracy["int8"] <= MAX_ACCURACY_DROP
    meta = read_metadata(onnx.load(tmp_path / "models" / "digits-int8.onnx"))
    assert "test_accuracy" not in meta and float(meta["float_accuracy"]) == accuracy["float"]
    assert verify(tmp_path / "models" / "digits-int8.onnx", strict=True).passed


@pytest.mark.parametrize("args,message", [
    (["lenet5", "--calibration-images", "10"], "--calibration-images goes with --int8"),
    (["lenet5", "--int8", "--calibration-images", "0"], "--calibration-images 0: give at least 1"),
    (["custom", "m:Net", "--input-shape", "1,28,28", "--calibration", "x.npy"], "--calibration goes with --int8"),
])
def test_int8_argument_errors_need_neither_torch_nor_onnx(args, message, tmp_path):
    result = run_without(LEAN, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []
