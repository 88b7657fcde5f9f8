"""Export a model, check it, and write the files only if every check passes: the shipped
weights, weights trained with `python -m zoo train` (both with a zoo model card), and the
core that export.custom uses for any nn.Module."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from torch import nn

from zoo.atomic import atomic_write_bytes, atomic_write_text
from zoo.data import load, normalize
from zoo.weights import WeightsError, check_not_shipped_name, load_weights_file, stem

from . import checks
from .exporter import export_model, export_with_card
from .int8 import Int8Options, training_calibration
from .options import DEFAULT_OPSET
from .test_data import write_test_data
from .triton import write_model_repository

NODE_CHECK_IMAGES = 16  # real test images pushed through the node-by-node comparison
TEST_DATA_IMAGES = 8  # images in test_data_set_0


@dataclass
class ExportResult:
    name: str
    passed: bool
    report: dict
    failure: str | None = None
    written: list[Path] = field(default_factory=list)
    int8: ExportResult | None = None  # the int8 file made from this one, with --int8

    def results(self) -> list[ExportResult]:
        """This result and the int8 one made from it, if any."""
        return [self] + ([self.int8] if self.int8 else [])


@dataclass(frozen=True)
class CheckInputs:
    """What the checks run on: normalized float32 (N, C, H, W), labels if known, and a
    description for the report (which images, or that they are random)."""
    images: np.ndarray
    labels: np.ndarray | None
    description: str
    kind: str  # "test set", "samples" or "random"


@dataclass(frozen=True)
class WriteOptions:
    out_dir: Path
    triton_repo: Path | None = None
    triton_device: str = "cpu"


def test_set_inputs(dataset: str, data_dir=None) -> CheckInputs:
    split = load(dataset, "test", data_dir=data_dir, progress=False)
    return CheckInputs(normalize(split.images, split.info), split.labels,
                       f"the {len(split.images):,} {dataset} test images", "test set")


def export_and_check(
    model: str, dataset: str, out_dir: Path, *, opset: int = DEFAULT_OPSET,
    data_dir=None, triton_repo: Path | None = None, triton_device: str = "cpu", int8: Int8Options | None = None,
) -> ExportResult:
    """The shipped weights of (model, dataset), written as <model>-<dataset>.onnx; with
    `int8`, also <model>-<dataset>-int8.onnx, calibrated on the training images."""
    proto, net, card = export_model(model, dataset, opset)
    report = {"source": "shipped", "model": model, "dataset": dataset, "opset": opset,
              "weights_sha256": card["weights_sha256"], "card_accuracy": card["test_accuracy"]}
    inputs, options = test_set_inputs(dataset, data_dir), WriteOptions(Path(out_dir), triton_repo, triton_device)
    result = check_and_write(stem(model, dataset), proto, net, inputs, report, options,
                             num_classes=len(card["classes"]), card_accuracy=card["test_accuracy"])
    return with_int8(result, proto, inputs, options, int8, dataset, data_dir, len(card["classes"]), opset)


def with_int8(result: ExportResult, proto: onnx.ModelProto, inputs: CheckInputs, options: WriteOptions,
              int8: Int8Options | None, dataset: str, data_dir, num_classes: int, opset: int) -> ExportResult:
    """`result`, with the int8 file made from it when `int8` asks for one (calibrated on
    the dataset's training images)."""
    if int8 is not None:
        from .int8_export import export_int8

        result.int8 = export_int8(result, proto, inputs, lambda: training_calibration(dataset, int8, data_dir),
                                  options, num_classes=num_classes, opset=opset)
    return result


def export_trained(
    weights_path: Path, out_dir: Path, *, name: str | None = None, model: str | None = None,
    dataset: str | None = None, opset: int = DEFAULT_OPSET, data_dir=None,
    triton_repo: Path | None = None, triton_device: str = "cpu", int8: Int8Options | None = None,
) -> ExportResult:
    """Weights written by `python -m zoo train`: the card beside them names the model and
    dataset, pins the SHA-256 and gives the accuracy the test set must reproduce."""
    weights_path = Path(weights_path)
    out_name = check_not_shipped_name(weights_path, name, "would be exported as")  # --name, else the stem
    net, card = load_weights_file(weights_path)
    for what, given in (("model", model), ("dataset", dataset)):
        if given is not None and given != card[what]:
            raise WeightsError(f"{weights_path}: its model card says {what} {card[what]!r}, not {given!r}")
    proto = export_with_card(net, card, opset, source="trained")
    report = {"source": "trained", "weights_file": str(weights_path), "model": card["model"],
              "dataset": card["dataset"], "opset": opset, "weights_sha256": card["weights_sha256"],
              "card_accuracy": card["test_accuracy"]}
    inputs, options = test_set_inputs(card["dataset"], data_dir), WriteOptions(Path(out_dir), triton_repo, triton_device)
    result = check_and_write(out_name, proto, net, inputs, report, options,
                             num_classes=len(card["classes"]), card_accuracy=card["test_accuracy"])
    return with_int8(result, proto, inputs, options, int8, card["dataset"], data_dir, len(card["classes"]), opset)


def check_and_write(name: str, proto: onnx.ModelProto, net: nn.Module, inputs: CheckInputs, report: dict,
                    options: WriteOptions, *, num_classes: int, card_accuracy: float | None) -> ExportResult:
    """The four checks on `inputs`; the model, its test data and (if asked) its Triton
    repository are written only when all of them pass. The report is written either way."""
    images = inputs.images
    report.update({"name": name, "checked_on": inputs.description, "checked_on_kind": inputs.kind})
    result = ExportResult(name, passed=False, report=report)
    sess = checks.session(proto)  # the optimized session, as users will run it
    steps = [
        ("structure", lambda: checks.check_strict_structure(proto, num_classes)),
        ("batch_axis", lambda: checks.check_batch_axis(proto, sess, net, images)),
        ("nodes", lambda: checks.node_summary(checks.check_nodes_match(proto, images[:NODE_CHECK_IMAGES]))),
        ("test_set", lambda: checks.check_test_set(proto, sess, net, images, inputs.labels, card_accuracy)),
    ]
    run_checks(result, steps)
    if result.passed:
        sample = images[:TEST_DATA_IMAGES]
        result.written += write_model(name, proto, sample, checks.torch_logits(net, sample), options, report)
    result.written.append(write_report(name, report, options.out_dir))
    return result


def run_checks(result: ExportResult, steps) -> None:
    """Each (key, check) in order into the report, with its time, until one fails."""
    report = result.report
    try:
        for key, step in steps:
            start = time.perf_counter()
            report[key] = step()
            report.setdefault("seconds", {})[key] = round(time.perf_counter() - start, 3)
    except checks.CheckFailed as e:
        result.failure = str(e)
        report["failure"] = result.failure
    report["passed"] = result.passed = result.failure is None


def write_model(name: str, proto: onnx.ModelProto, sample: np.ndarray, expected: np.ndarray,
                options: WriteOptions, report: dict) -> list[Path]:
    """<name>.onnx, <name>/test_data_set_0 (`sample` and the `expected` outputs) and, if
    asked, the Triton repository entry, in options.out_dir."""
    data = proto.SerializeToString()
    report["onnx_bytes"] = len(data)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = options.out_dir / f"{name}.onnx"
    atomic_write_bytes(onnx_path, data)
    written = [onnx_path, write_test_data(options.out_dir / name, sample, expected)]
    if options.triton_repo is not None:
        written.append(write_model_repository(options.triton_repo, name, proto, options.triton_device))
    return written


def write_report(name: str, report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / f"{name}.report.json"
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    return report_path


def worst_node(report: dict) -> dict | None:
    nodes = report.get("nodes") or []
    float_nodes = [n for n in nodes if np.isfinite(n["max_abs"])]
    return max(float_nodes, key=lambda n: n["max_abs"], default=None)
