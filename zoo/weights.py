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


# What every model card holds (what `write_outputs` in zoo/training.py writes, less its
# timings): whoever reads a card, the shipped weights' or a training run's, needs them all
# (the export's metadata reads every one).
CARD_FIELDS = ("model", "dataset", "test_accuracy", "num_params", "weights_file", "weights_sha256", "classes",
               "input", "recipe", "versions")


def _read_card_file(path: Path, when_missing: str) -> dict:
    """A model card, checked for every field of CARD_FIELDS; `when_missing` says why there
    might be none, for the message."""
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path}: no model card ({when_missing})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path}: model card is not valid JSON ({e})") from None
    if not isinstance(card, dict):
        raise WeightsError(f"{path}: model card is a JSON {type(card).__name__}, not an object")
    for key in CARD_FIELDS:
        if key not in card:
            raise WeightsError(f"{path}: model card lacks the field {key!r}")
    return card


def read_card(model: str, dataset: str, directory: str | os.PathLike | None = None) -> dict:
    path = weights_dir(directory) / f"{stem(model, dataset)}.json"
    return _read_card_file(path, f"no shipped weights for {model} on {dataset}")


def read_state_dict(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, after checking its SHA-256 when one is expected (a model
    card's); never unpickles anything."""
    import safetensors.torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file is missing" if not path.exists() else
                           f"{path}: is a directory, not a weights file")
    if expected_sha256 is not None:
        actual = sha256sum(path)
        if actual != expected_sha256:
            raise WeightsError(f"{path}: SHA-256 {actual} does not match the card's {expected_sha256}")
    try:
        return safetensors.torch.load_file(path)
    except Exception as e:  # safetensors raises its own SafetensorError and OSError
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None


def _some(items: list[str], shown: int = 4) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def load_weights_into(net: nn.Module, path: str | os.PathLike, what: str,
                      expected_sha256: str | None = None) -> nn.Module:
    """`net` with the state dict of the safetensors file `path` (SHA-256 checked when
    expected), in eval mode. Weights that do not fit `what` (the model's name, for the
    message) are a WeightsError naming the keys: missing, unexpected, of another shape."""
    state = read_state_dict(path, expected_sha256)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k} ({list(state[k].shape)} in the file, {list(own[k].shape)} in the model)"
                for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = [f"{label} {_some(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("other shapes:", reshaped)) if keys]
    if problems:
        raise WeightsError(f"{path}: does not fit {what}: " + "; ".join(problems))
    try:
        net.load_state_dict(state)
    except RuntimeError as e:  # what the checks above cannot see, in torch's first line
        raise WeightsError(f"{path}: does not fit {what} ({str(e).strip().splitlines()[0]})") from None
    return net.eval()


def load_pretrained(
    model: str, dataset: str, *, directory: str | os.PathLike | None = None
) -> tuple[nn.Module, dict]:
    """The shipped model for (model, dataset) in eval mode, and its card."""
    card = read_card(model, dataset, directory)
    path = weights_dir(directory) / card["weights_file"]
    return load_weights_into(get_model(model), path, model, card["weights_sha256"]), card


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
    card = _read_card_file(card_path, f"none beside {path.name}; python -m zoo train writes both")
    try:
        net = get_model(card["model"])
    except ValueError as e:
        raise WeightsError(f"{card_path}: {e}") from None
    return load_weights_into(net, path, card["model"], card["weights_sha256"]), card


def check_not_shipped_name(weights_path: str | os.PathLike, name: str | None, what: str) -> str:
    """The name for outputs made from weights the user trained: `name`, else the weights
    file's stem, but never silently a shipped model's (its files would be overwritten, or a
    server would serve the user's weights under the zoo's name). `what` says what the name
    is for, in the message."""
    chosen = name or Path(weights_path).stem
    if chosen in {stem(m, d) for m, d in shipped()}:
        how = "choose another --name" if name else "choose a name with --name"
        raise WeightsError(f"{weights_path}: {what} {chosen!r}, the name of the shipped model; {how} "
                           f"(for example my-{chosen})")
    return chosen


def shipped() -> list[tuple[str, str]]:
    """(model, dataset) pairs that have a card in the shipped weights directory."""
    pairs = []
    for card_path in sorted(weights_dir().glob("*.json")):
        card = json.loads(card_path.read_text())
        pairs.append((card["model"], card["dataset"]))
    return pairs
