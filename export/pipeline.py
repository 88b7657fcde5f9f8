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
    data_dir=None, triton_repo: Path | None = None, triton_device: str = "cpu",
) -> ExportResult:
    """The shipped weights of (model, dataset), written as <model>-<dataset>.onnx."""
    proto, net, card = export_model(model, dataset, opset)
    report = {"source": "shipped", "model": model, "dataset": dataset, "opset": opset,
              "weights_sha256": card["weights_sha256"], "card_accuracy": card["test_accuracy"]}
    return check_and_write(stem(model, dataset), proto, net, test_set_inputs(dataset, data_dir), report,
                           WriteOptions(Path(out_dir), triton_repo, triton_device),
                           num_classes=len(card["classes"]), card_accuracy=card["test_accuracy"])


def trained_name(weights_path: Path, name: str | None) -> str:
    """The output name for weights the user trained: --name, else the weights file's stem,
    never silently a shipped model's."""
    return check_not_shipped_name(weights_path, name, "would be exported as")


def export_trained(
    weights_path: Path, out_dir: Path, *, name: str | None = None, model: str | None = None,
    dataset: str | None = None, opset: int = DEFAULT_OPSET, data_dir=None,
    triton_repo: Path | None = None, triton_device: str = "cpu",
) -> ExportResult:
    """Weights written by `python -m zoo train`: the card beside them names the model and
    dataset, pins the SHA-256 and gives the accuracy the test set must reproduce."""
    weights_path = Path(weights_path)
    out_name = trained_name(weights_path, name)
    net, card = load_weights_file(weights_path)
    for what, given in (("model", model), ("dataset", dataset)):
        if given is not None and given != card[what]:
            raise WeightsError(f"{weights_path}: its model card says {what} {card[what]!r}, not {given!r}")
    proto = export_with_card(net, card, opset, source="trained")
    report = {"source": "trained", "weights_file": str(weights_path), "model": card["model"],
              "dataset": card["dataset"], "opset": opset, "weights_sha256": card["weights_sha256"],
              "card_accuracy": card["test_accuracy"]}
    return check_and_write(out_name, proto, net, test_set_inputs(card["dataset"], data_dir), report,
                           WriteOptions(Path(out_dir), triton_repo, triton_device),
                           num_classes=len(card["classes"]), card_accuracy=card["test_accuracy"])


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
    try:
        for key, step in steps:
            start = time.perf_counter()
            report[key] = step()
            report.setdefault("seconds", {})[key] = round(time.perf_counter() - start, 3)
    except checks.CheckFailed as e:
        result.failure = str(e)
        report["failure"] = result.failure
    report["passed"] = result.passed = result.failure is None
    out_dir = options.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if result.passed:
        data = proto.SerializeToString()
        report["onnx_bytes"] = len(data)
        onnx_path = out_dir / f"{name}.onnx"
        atomic_write_bytes(onnx_path, data)
        sample = images[:TEST_DATA_IMAGES]
        test_dir = write_test_data(out_dir / name, sample, checks.torch_logits(net, sample))
        result.written += [onnx_path, test_dir]
        if options.triton_repo is not None:
            result.written.append(write_model_repository(options.triton_repo, name, proto, options.triton_device))
    report_path = out_dir / f"{name}.report.json"
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    result.written.append(report_path)
    return result


def worst_node(report: dict) -> dict | None:
    nodes = report.get("nodes") or []
    float_nodes = [n for n in nodes if np.isfinite(n["max_abs"])]
    return max(float_nodes, key=lambda n: n["max_abs"], default=None)
