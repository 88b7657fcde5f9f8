"""Test-set evaluation: accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Split, normalize

EVAL_BATCH = 1000


@dataclass
class EvalReport:
    accuracy: float
    loss: float
    confusion: np.ndarray  # (C, C): rows are true classes, columns predictions
    classes: tuple[str, ...]

    @property
    def per_class_accuracy(self) -> np.ndarray:
        return np.diag(self.confusion) / self.confusion.sum(axis=1)


@torch.inference_mode()
def predict_logits(net: nn.Module, x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Logits for normalized float32 (N, C, H, W) inputs, in eval mode, batch by batch."""
    was_training = net.training
    net.eval()
    x = torch.as_tensor(x)
    out = torch.cat([net(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
    net.train(was_training)
    return out


def evaluate(net: nn.Module, split: Split) -> EvalReport:
    logits = predict_logits(net, normalize(split.images, split.info))
    labels = torch.from_numpy(split.labels)
    loss = F.cross_entropy(logits, labels).item()
    predictions = logits.argmax(1).numpy()
    n = len(split.info.classes)
    confusion = np.bincount(split.labels * n + predictions, minlength=n * n).reshape(n, n)
    return EvalReport(float((predictions == split.labels).mean()), loss, confusion, split.info.classes)


def format_report(report: EvalReport, title: str) -> str:
    width = max(len(c) for c in report.classes)
    digits = len(str(len(report.classes) - 1))  # class indices, right-aligned
    lines = [f"{title}: test accuracy {100 * report.accuracy:.2f}% "
             f"({int(np.trace(report.confusion))}/{int(report.confusion.sum())})", "",
             "per-class accuracy:"]
    for i, (name, acc) in enumerate(zip(report.classes, report.per_class_accuracy)):
        lines.append(f"  {i:>{digits}}  {name:<{width}}  {100 * acc:6.2f}%")
    lines += ["", "confusion matrix (a row per true class, a column per predicted class, by index):"]
    corner = "true \\ predicted"
    labels = [f"{i:>{digits}}  {name}" for i, name in enumerate(report.classes)]
    label_width = max(len(corner), *map(len, labels))
    lines.append(f"{corner:<{label_width}}" + "".join(f"{i:>6}" for i in range(len(report.classes))))
    for label, row in zip(labels, report.confusion):
        lines.append(f"{label:<{label_width}}" + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)
