"""What a custom model's checks run on: the user's images (a folder, optionally in
class-named subfolders), an .npy array, or seeded random inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.normalization import Normalization

from .pipeline import CheckInputs

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
RANDOM_INPUTS = 64
SEED = 0
MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels -> the Pillow mode images are converted to


def read_image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    if channels not in MODES:
        raise ValueError(f"{path}: images can feed 1, 3 or 4 channels, not {channels}; give an .npy instead")
    try:
        with Image.open(path) as image:
            converted = image.convert(MODES[channels]).resize((width, height), Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path}: cannot read as an image ({e})") from None
    array = np.asarray(converted, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)  # (C, H, W)


def folder_inputs(folder: Path, shape, labels: list[str] | None, norm: Normalization) -> CheckInputs:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
    pixels = np.stack([read_image(p, shape) for p in files])
    classes = [p.parent.name for p in files]
    labelled = labels is not None and all(p.parent != folder for p in files) and set(classes) <= set(labels)
    targets = np.array([labels.index(c) for c in classes]) if labelled else None
    how = " in class-named subfolders" if labelled else ""
    return CheckInputs(norm.apply(pixels), targets,
                       f"{len(files)} images from {folder}{how}", "samples")


def npy_inputs(path: Path, shape, norm: Normalization) -> CheckInputs:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy file ({e})") from None
    if array.ndim == 3 and shape[0] == 1:
        array = array[:, None]  # (N, H, W) for one channel
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(shape):
        raise ValueError(f"{path}: shape {list(array.shape)}, expected [N, {', '.join(map(str, shape))}]")
    if array.dtype == np.uint8:  # raw pixels: scaled and normalized like images
        return CheckInputs(norm.apply(array), None,
                           f"{len(array)} raw uint8 inputs from {path}", "samples")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: dtype {array.dtype}; expected uint8 pixels or floats already normalized")
    return CheckInputs(array.astype(np.float32), None, f"{len(array)} normalized inputs from {path}", "samples")


def random_inputs(shape, n: int = RANDOM_INPUTS, seed: int = SEED) -> CheckInputs:
    x = np.random.default_rng(seed).standard_normal((n, *shape), dtype=np.float32)
    return CheckInputs(x, None, f"{n} random inputs (standard normal, seed {seed}; no samples given)", "random")


def check_inputs(samples, shape, labels, norm: Normalization) -> CheckInputs:
    """samples: None (random), a folder, an .npy path, or an array of raw uint8 pixels or
    normalized floats shaped (N, C, H, W)."""
    if samples is None:
        return random_inputs(shape)
    if isinstance(samples, np.ndarray):
        if samples.ndim != 4 or tuple(samples.shape[1:]) != tuple(shape):
            raise ValueError(f"samples: shape {list(samples.shape)}, expected [N, {', '.join(map(str, shape))}]")
        if samples.dtype == np.uint8:
            return CheckInputs(norm.apply(samples), None,
                               f"{len(samples)} raw uint8 inputs given", "samples")
        return CheckInputs(samples.astype(np.float32), None, f"{len(samples)} normalized inputs given", "samples")
    path = Path(samples)
    if path.is_dir():
        return folder_inputs(path, shape, labels, norm)
    if path.suffix == ".npy" and path.is_file():
        return npy_inputs(path, shape, norm)
    raise FileNotFoundError(f"samples {path}: expected a folder of images or an .npy file")
