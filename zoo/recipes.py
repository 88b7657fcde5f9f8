"""Training hyperparameters. The recipe of each shipped model is in its record
(zoo/records.py), which `python -m zoo train` takes as its defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule (AdamW)
    weight_decay: float = 1e-4  # decoupled (AdamW) weight decay
    label_smoothing: float = 0.0
    # Random translation of up to this many pixels in each direction (0 = off). The
    # border is filled with the background value, as in the padded crop torchvision's
    # RandomCrop(size, padding=shift) makes.
    shift: int = 0
    hflip: bool = False  # random horizontal flip; right for garments, wrong for digits
    seed: int = 0
    # Cap on training images per epoch (None = all 60,000); for smoke tests and dry runs.
    train_limit: int | None = None
    channels_last: bool = False  # NHWC memory layout: faster for wide conv stacks on CPU
