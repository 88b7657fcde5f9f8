"""Training hyperparameters, and the recipe that produced each shipped model."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule (AdamW)
    weight_decay: float = 1e-4  # decoupled (AdamW) weight decay
    label_smoothing: float = 0.0
    # Random translation of up to this many pixels in each direction (0 = off). The
    # border is filled with the background value, as in the padded crop torchvision's
    # RandomCrop(28, padding=shift) makes.
    shift: int = 0
    hflip: bool = False  # random horizontal flip; right for garments, wrong for digits
    seed: int = 0
    # Cap on training images per epoch (None = all 60,000); for smoke tests and dry runs.
    train_limit: int | None = None
    channels_last: bool = False  # NHWC memory layout: faster for wide conv stacks on CPU


# (model, dataset) -> the recipe of its shipped weights. `python -m zoo train` uses these
# as its defaults, so retraining a shipped model is one command with no flags.
RECIPES: dict[tuple[str, str], TrainConfig] = {
    ("lenet5", "mnist"): TrainConfig(epochs=6),
    ("lenet5", "fashion-mnist"): TrainConfig(epochs=15, hflip=True),
    ("lenet5-classic", "mnist"): TrainConfig(epochs=12),
    ("lenet5-classic", "fashion-mnist"): TrainConfig(epochs=15, hflip=True),
    ("twoblock-cnn", "mnist"): TrainConfig(epochs=8, shift=2),
    ("twoblock-cnn", "fashion-mnist"): TrainConfig(epochs=15, shift=2, hflip=True),
    ("resnet-mini", "mnist"): TrainConfig(epochs=8, shift=2, channels_last=True),
    ("resnet-mini", "fashion-mnist"): TrainConfig(
        epochs=15, shift=2, hflip=True, label_smoothing=0.1, channels_last=True
    ),
}


def recipe_for(model: str, dataset: str, **overrides) -> TrainConfig:
    """The shipped recipe for (model, dataset), with the non-None overrides applied."""
    base = RECIPES.get((model, dataset), TrainConfig())
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
