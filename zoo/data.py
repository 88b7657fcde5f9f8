"""MNIST and Fashion-MNIST: find or fetch the files, parse them, normalize them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from .datasets import FILES, DatasetInfo, get_dataset_info
from .download import DownloadError, download_file
from .idx import IdxFormatError, read_idx

DATA_DIR_ENV = "ZOO_DATA_DIR"
# Space-separated mirrors that replace the official ones. Each is a root holding one folder
# per dataset (https://host/data/ serves https://host/data/fashion-mnist/t10k-...gz), or a
# template in which {dataset} stands for the dataset's name (https://host/{dataset}-gz/).
MIRRORS_ENV = "ZOO_DATA_MIRRORS"


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W) uint8, raw pixels (one channel: info.image_shape is (1, H, W))
    labels: np.ndarray  # (N,) int64
    info: DatasetInfo


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The explicit argument, else $ZOO_DATA_DIR, else a per-user cache directory."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return Path(platformdirs.user_cache_dir("cnn-zoo")) / "data"


def mirror_base(mirror: str, dataset: str) -> str:
    """The base URL of `dataset`'s files on a ZOO_DATA_MIRRORS entry (a root, or a template)."""
    if "{dataset}" in mirror:
        return mirror.replace("{dataset}", dataset)
    return f"{mirror.rstrip('/')}/{dataset}/"


def _mirrors(info: DatasetInfo) -> tuple[str, ...]:
    override = os.environ.get(MIRRORS_ENV, "").split()
    return tuple(mirror_base(m, info.name) for m in override) or info.mirrors


def candidates(info: DatasetInfo, name: str, data_dir: Path) -> list[Path]:
    """Where a dataset file may be, in the order looked at: our layout (<dir>/mnist/), then
    torchvision's (<dir>/MNIST/raw/, <dir>/FashionMNIST/raw/), each as the published .gz
    or unpacked (torchvision keeps both)."""
    folders = (data_dir / info.name, data_dir / info.torchvision_name / "raw")
    return [folder / n for folder in folders for n in (name, name.removesuffix(".gz"))]


def ensure_file(
    info: DatasetInfo, name: str, data_dir: Path, *, download: bool = True, progress: bool = True
) -> Path:
    """Path of one dataset file, found in either layout, or downloaded into ours first when
    it is in neither."""
    found = next((p for p in candidates(info, name, data_dir) if p.is_file()), None)
    if found is not None:
        return found
    path = data_dir / info.name / name
    if not download:
        raise FileNotFoundError(f"{path} is missing, nor is it in torchvision's layout "
                                f"({data_dir / info.torchvision_name / 'raw'}/), and downloading is off")
    try:
        download_file(name, info.files[name], path.parent, _mirrors(info), progress=progress)
    except DownloadError as e:
        raise DownloadError(
            f"{e}. Without network, put the official .gz files in {path.parent}/, or point "
            f"--data-dir or {DATA_DIR_ENV} at a directory holding {info.name}/ (or torchvision's "
            f"{info.torchvision_name}/raw/); or name a mirror in {MIRRORS_ENV} (a URL with {info.name}/ below it)"
        ) from None
    return path


def load(
    dataset: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
) -> Split:
    """Load the 'train' or 'test' split of a dataset as raw uint8 images and labels."""
    info = get_dataset_info(dataset)
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(FILES)}")
    root = resolve_data_dir(data_dir)
    image_file, label_file = (
        ensure_file(info, name, root, download=download, progress=progress) for name in FILES[split]
    )
    images = read_idx(image_file, ndim=3)
    labels = read_idx(label_file, ndim=1)
    if images.shape[1:] != info.image_shape[1:]:
        raise IdxFormatError(image_file, f"images are {images.shape[1:]}, expected {info.image_shape[1:]}")
    if len(images) != len(labels):
        raise IdxFormatError(
            label_file, f"{len(labels)} labels for {len(images)} images in {image_file.name}"
        )
    if labels.size and labels.max() >= len(info.classes):
        raise IdxFormatError(
            label_file, f"label {labels.max()} out of range 0..{len(info.classes) - 1}"
        )
    return Split(images=images, labels=labels.astype(np.int64), info=info)


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and population standard deviation of pixels scaled to [0, 1], in float64."""
    scaled = images.astype(np.float64) / 255.0
    return float(scaled.mean()), float(scaled.std())


def normalize(images: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """A dataset's uint8 images (N, H, W) -> its models' float32 input (N, 1, H, W), by the
    dataset's normalization (zoo.normalization, the one the export and the server use)."""
    return info.normalization.apply(images[:, None])
