"""What we know about each dataset: its files, checksums, mirrors, image shape, labels,
statistics and what its images look like. Importable without torch (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

from .normalization import DEFAULT_PIXEL_SCALE, Normalization

# (C, H, W) of one image of MNIST and of Fashion-MNIST: one channel of 28 x 28 pixels.
IDX_IMAGE_SHAPE = (1, 28, 28)
# MNIST's digits were scaled to fit a 20 x 20 box of that field, keeping their aspect ratio,
# and placed with their centre of mass at its centre (LeCun et al., the MNIST page).
MNIST_DIGIT_BOX = 20


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    files: dict[str, str]  # file name -> MD5 of the official .gz file
    mirrors: tuple[str, ...]  # base URLs, tried in order
    classes: tuple[str, ...]
    title: str  # its name in prose: MNIST, Fashion-MNIST
    torchvision_name: str  # torchvision's folder: <root>/<torchvision_name>/raw/ holds the same files
    image_shape: tuple[int, int, int]  # (C, H, W) of one image
    light_on_dark: bool  # light strokes on a dark background (a drawing on paper is the inverse)
    # The side of the box the images' content was scaled to fit, centred by mass in the
    # field, for datasets made that way (MNIST's digits); None where nothing was framed.
    content_box: int | None
    # Pixel statistics after scaling to [0, 1]: the mean and the (population) standard
    # deviation over all 60,000 training images' pixels, computed in float64 by
    # `zoo.data.pixel_stats(load(name, "train").images)` and rounded to 4 places
    # (a test recomputes them). Inputs are normalized as (pixel / 255 - mean) / std.
    mean: float
    std: float

    @property
    def normalization(self) -> Normalization:
        """What every model trained on this dataset expects of its input's raw pixels."""
        return Normalization(DEFAULT_PIXEL_SCALE, (self.mean,), (self.std,))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        files={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://yann.lecun.com/exdb/mnist/",
        ),
        classes=tuple(str(d) for d in range(10)),
        title="MNIST",
        torchvision_name="MNIST",
        image_shape=IDX_IMAGE_SHAPE,
        light_on_dark=True,
        content_box=MNIST_DIGIT_BOX,
        mean=0.1307,  # 0.130660...
        std=0.3081,  # 0.308108...
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        files={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        title="Fashion-MNIST",
        torchvision_name="FashionMNIST",
        image_shape=IDX_IMAGE_SHAPE,
        light_on_dark=True,
        content_box=None,  # the garments fill the field; nothing to frame
        mean=0.2860,  # 0.286041...
        std=0.3530,  # 0.353024...
    ),
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}"
        ) from None
