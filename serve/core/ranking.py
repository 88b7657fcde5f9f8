"""Ranking scores: Predict's answer (per image, the probabilities and the top k classes) and
the classification extension's top k strings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import invalid
from .registry import ServedModel


@dataclass(frozen=True)
class ClassScore:
    index: int
    label: str
    probability: float
    logit: float


@dataclass(frozen=True)
class Ranked:
    logits: list[float]
    probabilities: list[float]
    top_k: list[ClassScore]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def check_top_k(top_k: int, model: ServedModel) -> int:
    """The number of classes to list: 0 means 1, more than the model has means all."""
    if top_k < 0:
        raise invalid(f"top_k: {top_k} is negative; expected 0 (meaning 1) to {model.num_classes}")
    return min(max(top_k, 1), model.num_classes)


def rank(logits: np.ndarray, k: int, labels: list[str]) -> list[Ranked]:
    probabilities = softmax(logits)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [Ranked(row_logits.tolist(), row_probs.tolist(),
                   [ClassScore(int(i), labels[i], float(row_probs[i]), float(row_logits[i])) for i in top])
            for row_logits, row_probs, top in zip(logits, probabilities, order)]


def classification_strings(logits: np.ndarray, k: int, labels: list[str] | None) -> list[str]:
    """Triton's classification extension: per image, the top k as 'value:index:label'
    ('value:index' without labels), row after row."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return [f"{row[i]:f}:{i}:{labels[i]}" if labels else f"{row[i]:f}:{i}"
            for row, top in zip(logits, order) for i in top]
