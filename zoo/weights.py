"""Shipped weights: safetensors files with a JSON model card that pins their SHA-256.

The cards are read without torch (the command lines list and check names before they pay
for importing it); loading or saving weights imports torch and safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

from typing import TYPE_CHECKING

from .atomic import atomic_open, atomic_write_text
from .registry import get_model

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"


class WeightsError(ValueError):
    """A weights file or model card that is missing, corrupt or does not match."""


def weights_dir(directory: str | os.PathLike | None = None) -> Path:
    return Path(directory or WEIGHTS_DIR)


def stem(model: str, dataset: str) -> str:
    return f"{model}-{dataset}"


def split_stem(name: str) -> tuple[str, str]:
    """The inverse of `stem`: 'lenet5-fashion-mnist' -> ('lenet5', 'fashion-mnist')."""
    from .datasets import list_datasets

    for dataset in sorted(list_datasets(), key=len, reverse=True):  # fashion-mnist before mnist
        if name.endswith(f"-{dataset}"):
            return name[: -len(dataset) - 1], dataset
    raise ValueError(f"{name!r} does not end in a dataset name ({', '.join(list_datasets())})")


def sha256sum(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import numpy as np
    import safetensors
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str]) -> str:
    """Write the state dict atomically as safetensors; returns the file's SHA-256."""
    import safetensors.torch

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = safetensors.torch.save(tensors, metadata=metadata)
    with atomic_open(path) as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def write_card(path: str | os.PathLike, card: dict) -> None:
    atomic_write_text(path, json.dumps(card, indent=2, sort_keys=False) + "\n")


def read_card(model: str, dataset: str, directory: str | os.PathLike | None = None) -> dict:
    path = weights_dir(directory) / f"{stem(model, dataset)}.json"
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path}: no model card (no shipped weights for {model} on {dataset})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path}: model card is not valid JSON ({e})") from None
    for key in ("model", "dataset", "weights_sha256", "weights_file"):
        if key not in card:
            raise WeightsError(f"{path}: model card lacks the field {key!r}")
    return card


def load_state_dict(path: str | os.PathLike, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Read a safetensors file after checking its SHA-256 (never unpickles anything)."""
    import safetensors.torch

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: weights file is missing")
    actual = sha256sum(path)
    if actual != expected_sha256:
        raise WeightsError(f"{path}: SHA-256 {actual} does not match the card's {expected_sha256}")
    try:
        return safetensors.torch.load_file(path)
    except Exception as e:  # safetensors raises its own SafetensorError and OSError
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None


def load_pretrained(
    model: str, dataset: str, *, directory: str | os.PathLike | None = None
) -> tuple[nn.Module, dict]:
    """The shipped model for (model, dataset) in eval mode, and its card."""
    card = read_card(model, dataset, directory)
    path = weights_dir(directory) / card["weights_file"]
    state = load_state_dict(path, card["weights_sha256"])
    net = get_model(model)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{path}: does not fit {model} ({e})") from None
    return net.eval(), card


def card_path_for(weights_path: str | os.PathLike) -> Path:
    """The model card written beside a weights file: runs/lenet5-mnist.safetensors ->
    runs/lenet5-mnist.json (what `python -m zoo train` writes)."""
    return Path(weights_path).with_suffix(".json")


def load_weights_file(weights_path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """A model trained by `python -m zoo train`, from its .safetensors file and the model card
    beside it (which names the model, and pins the file's SHA-256), in eval mode."""
    path = Path(weights_path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: expected a .safetensors file written by `python -m zoo train`")
    if not path.exists():
        raise WeightsError(f"{path}: weights file is missing")
    card_path = card_path_for(path)
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{card_path}: no model card beside {path.name} (python -m zoo train writes "
                           "both)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{card_path}: model card is not valid JSON ({e})") from None
    for key in ("model", "dataset", "weights_sha256", "test_accuracy", "classes", "input"):
        if key not in card:
            raise WeightsError(f"{card_path}: model card lacks the field {key!r}")
    state = load_state_dict(path, card["weights_sha256"])
    try:
        net = get_model(card["model"])
    except ValueError as e:
        raise WeightsError(f"{card_path}: {e}") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{path}: does not fit {card['model']} ({e})") from None
    return net.eval(), card


def shipped() -> list[tuple[str, str]]:
    """(model, dataset) pairs that have a card in the shipped weights directory."""
    pairs = []
    for card_path in sorted(weights_dir().glob("*.json")):
        card = json.loads(card_path.read_text())
        pairs.append((card["model"], card["dataset"]))
    return pairs
