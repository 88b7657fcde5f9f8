"""One record per shipped model: the facts about each (model, dataset) whose weights the zoo
ships, in the spirit of torchvision's `Weights.meta`. Training (its defaults), the model
cards it writes, the export (input shape, labels, normalization), the Triton config, the
pictures and the tests (the accuracy floors) all read them from here.

The record holds what is decided about a shipped model: its recipe and the floor its
weights must reach. What follows from its dataset (the image shape, the labels, the
normalization) comes from the dataset's record, zoo/datasets.py. Importable without torch,
so the command lines check names and sizes before they import it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .datasets import DATASETS, DatasetInfo, get_dataset_info
from .normalization import Normalization
from .recipes import TrainConfig


@dataclass(frozen=True)
class ModelRecord:
    model: str  # the registry's name (zoo/models.py)
    dataset: str
    recipe: TrainConfig  # what `python -m zoo train` uses by default, and produced the weights
    floor: float  # test accuracy the shipped weights must reach (tests/test_shipped_weights.py)

    @property
    def name(self) -> str:
        """The shipped files' stem and the served model's name: lenet5-mnist."""
        return f"{self.model}-{self.dataset}"

    @property
    def info(self) -> DatasetInfo:
        return get_dataset_info(self.dataset)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input."""
        return self.info.image_shape

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def normalization(self) -> Normalization:
        return self.info.normalization


def _only(values: set, what: str):
    if len(values) != 1:
        raise AssertionError(f"the datasets differ in {what} ({sorted(values)}): the zoo's models take one")
    return next(iter(values))


# The zoo's models are built for the datasets' images: one shape and one class count for both.
INPUT_SHAPE: tuple[int, int, int] = _only({d.image_shape for d in DATASETS.values()}, "image shape")
NUM_CLASSES: int = _only({d.num_classes for d in DATASETS.values()}, "class count")

RECORDS: dict[tuple[str, str], ModelRecord] = {(r.model, r.dataset): r for r in (
    ModelRecord("lenet5", "mnist", TrainConfig(epochs=6), floor=0.990),
    ModelRecord("lenet5", "fashion-mnist", TrainConfig(epochs=15, hflip=True), floor=0.900),
    ModelRecord("lenet5-classic", "mnist", TrainConfig(epochs=12), floor=0.988),
    ModelRecord("lenet5-classic", "fashion-mnist", TrainConfig(epochs=15, hflip=True), floor=0.890),
    ModelRecord("twoblock-cnn", "mnist", TrainConfig(epochs=8, shift=2), floor=0.992),
    ModelRecord("twoblock-cnn", "fashion-mnist", TrainConfig(epochs=15, shift=2, hflip=True), floor=0.915),
    ModelRecord("resnet-mini", "mnist", TrainConfig(epochs=8, shift=2, channels_last=True), floor=0.995),
    ModelRecord("resnet-mini", "fashion-mnist",
                TrainConfig(epochs=15, shift=2, hflip=True, label_smoothing=0.1, channels_last=True), floor=0.930),
)}




def recipe_for(model: str, dataset: str, **overrides) -> TrainConfig:
    """The shipped recipe for (model, dataset) (TrainConfig's defaults for another pair),
    with the non-None overrides applied."""
    record = RECORDS.get((model, dataset))
    base = record.recipe if record else TrainConfig()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def card_input(info: DatasetInfo) -> dict:
    """The "input" section of a model card: what the model takes, from its dataset's record."""
    norm = info.normalization
    return {"layout": "NCHW", "shape": [None, *info.image_shape], "dtype": "float32",
            "scale": norm.pixel_scale, "mean": norm.mean[0] if len(norm.mean) == 1 else list(norm.mean),
            "std": norm.std[0] if len(norm.std) == 1 else list(norm.std)}
