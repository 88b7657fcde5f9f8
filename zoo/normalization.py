"""Raw pixels -> a model's input, and the per-channel mean and std that say how: the one
implementation the zoo, the export and the server share.

NumPy only: the server (which has no torch) imports it, and so do the command lines before
they pay for importing torch. A model states its normalization as `pixel_scale` (raw pixels
are multiplied by it first, 1/255 for 0..255 pixels), then a mean and a std, each one
number for every channel or one per channel: x = (pixels * pixel_scale - mean[c]) / std[c].
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

DEFAULT_PIXEL_SCALE = 1 / 255  # raw 0..255 pixels to 0..1 when nothing else is said


@dataclass(frozen=True)
class Normalization:
    """Raw pixels -> model input: x * pixel_scale, then (x - mean) / std per channel."""

    pixel_scale: float = DEFAULT_PIXEL_SCALE
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (..., C, H, W) of any numeric dtype -> float32 of the same shape. The
        mean and std broadcast over the channel axis (a single value over every channel)."""
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        x = pixels.astype(np.float32) * np.float32(self.pixel_scale)
        return (x - mean) / std

    def of_zero(self) -> float:
        """What a raw pixel of 0 (the background of MNIST's images) becomes, channel 0."""
        return float((0.0 - self.mean[0]) / self.std[0])


def channel_values(value, key: str, channels: int | None = None, *, positive: bool = False) -> tuple[float, ...]:
    """A mean or std as a model or a user states it, as a tuple of floats: a number, a
    sequence of numbers, or text: a JSON number or list (what the ONNX metadata holds,
    "0.1307" or "[0.485, 0.456, 0.406]") or comma-separated numbers (a command line's
    "0.485,0.456,0.406"). One value stands for every channel; otherwise there must be one
    per channel. ValueError naming `key`, what was given and what was expected."""
    raw = _from_text(value, key) if isinstance(value, str) else value
    items = list(raw) if isinstance(raw, (list, tuple, np.ndarray)) else [raw]
    if not items:
        raise ValueError(f"{key} is empty; expected a number, or one per channel")
    if any(isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.number)) for v in items):
        raise ValueError(f"{key} {_shown(value)} is not a number or a list of numbers")
    values = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{key} {list(values)} must be finite")
    if channels is not None and len(values) not in (1, channels):
        raise ValueError(f"{key} has {len(values)} values for {channels} channels; expected 1 or {channels}")
    if positive and min(values) <= 0:
        raise ValueError(f"{key} {list(values)} must be positive")
    return values


def _from_text(text: str, key: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{key} {_shown(text)} is not a number or a list of numbers") from None


def _shown(value) -> str:
    return repr(value[:80] if isinstance(value, str) else value)


def parse_normalization(mean, std, pixel_scale=DEFAULT_PIXEL_SCALE, channels: int | None = None,
                        keys: tuple[str, str, str] = ("mean", "std", "pixel_scale")) -> Normalization:
    """A checked Normalization from a model's or a user's mean, std and pixel scale (each
    in any form `channel_values` takes); `keys` name them in the messages (a command line
    says "--mean", "--std", "--pixel-scale")."""
    mean_key, std_key, scale_key = keys
    scale = channel_values(pixel_scale, scale_key, positive=True)
    if len(scale) != 1:
        raise ValueError(f"{scale_key} {list(scale)}: expected one number for every channel")
    return Normalization(scale[0], channel_values(mean, mean_key, channels),
                         channel_values(std, std_key, channels, positive=True))


def format_channels(values: Iterable[float] | float) -> str:
    """A mean or std as ONNX metadata: a plain number for one channel ("0.1307"), a JSON
    list for several ("[0.485, 0.456, 0.406]"); `channel_values` reads either."""
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    return repr(values[0]) if len(values) == 1 else json.dumps(values)
