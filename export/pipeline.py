"""Export one shipped model, check it, and write the files only if every check passes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.atomic import atomic_write_bytes, atomic_write_text
from zoo.data import load, normalize
from zoo.weights import stem

from . import checks
from .exporter import DEFAULT_OPSET, export_model
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


def export_and_check(
    model: str, dataset: str, out_dir: Path, *, opset: int = DEFAULT_OPSET,
    data_dir=None, triton_repo: Path | None = None, triton_device: str = "cpu",
) -> ExportResult:
    name = stem(model, dataset)
    proto, net, card = export_model(model, dataset, opset)
    split = load(dataset, "test", data_dir=data_dir, progress=False)
    images = normalize(split.images, split.info)
    report: dict = {"model": model, "dataset": dataset, "opset": opset,
                    "weights_sha256": card["weights_sha256"], "card_accuracy": card["test_accuracy"]}
    result = ExportResult(name, passed=False, report=report)
    sess = checks.session(proto)  # the optimized session, as users will run it
    steps = [
        ("structure", lambda: checks.check_structure(proto)),
        ("batch_axis", lambda: checks.check_batch_axis(proto, sess, net, images)),
        ("nodes", lambda: checks.node_summary(checks.check_nodes(proto, images[:NODE_CHECK_IMAGES]))),
        ("test_set", lambda: checks.check_test_set(proto, sess, net, images, split.labels,
                                                   card["test_accuracy"])),
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
    out_dir.mkdir(parents=True, exist_ok=True)
    if result.passed:
        data = proto.SerializeToString()
        report["onnx_bytes"] = len(data)
        onnx_path = out_dir / f"{name}.onnx"
        atomic_write_bytes(onnx_path, data)
        sample = images[:TEST_DATA_IMAGES]
        test_dir = write_test_data(out_dir / name, sample, checks.torch_logits(net, sample))
        result.written += [onnx_path, test_dir]
        if triton_repo is not None:
            result.written.append(write_model_repository(triton_repo, name, proto, triton_device))
    report_path = out_dir / f"{name}.report.json"
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    result.written.append(report_path)
    return result


def worst_node(report: dict) -> dict | None:
    nodes = report.get("nodes") or []
    float_nodes = [n for n in nodes if np.isfinite(n["max_abs"])]
    return max(float_nodes, key=lambda n: n["max_abs"], default=None)
