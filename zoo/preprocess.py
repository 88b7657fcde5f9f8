"""Making a photo or a drawing look like the images a model learned from, before it is
resized to the model's input: the one implementation the server (serve.core.preprocess,
for every image it is sent) and the pictures (`python -m zoo viz --image`) share. NumPy and
Pillow only: the server, which has no torch, imports it.

- polarity: MNIST and Fashion-MNIST are light on a dark background (their records say so,
  zoo/datasets.py). For a model trained on either, a grayscale image whose border is mostly
  light (a digit drawn on paper, in a drawing app) is inverted. Other models' images are
  left as they are: their data's polarity is unknown.
- framing, for digit models (MNIST, whose record gives the box): MNIST's digits were scaled
  to fit a 20 x 20 box, keeping their aspect ratio, and placed in the 28 x 28 field with
  their centre of mass at its centre. An image of another size (a canvas, a photo) is
  framed the same way: cropped to the stroke, scaled, centred by mass. An image already at
  the model's size is taken as framed, so a test image is answered exactly as its tensor is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .datasets import DATASETS, IDX_IMAGE_SHAPE, MNIST_DIGIT_BOX

LIGHT = 128  # a pixel at least this bright is light
MNIST_BOX_FRACTION = MNIST_DIGIT_BOX / IDX_IMAGE_SHAPE[1]  # the box's side over the field's
INK = 0.1  # a pixel brighter than this fraction of the brightest is stroke, for the crop


@dataclass(frozen=True)
class Preprocessing:
    auto_invert: bool = True  # invert a grayscale image on a light background
    frame: bool = True  # crop and centre digits by mass (digit models, images not yet at the model's size)


@dataclass(frozen=True)
class Prepared:
    """An image after the preparation, and what was done to it."""

    image: Image.Image
    inverted: bool
    framed: bool

    def steps(self, dataset: str) -> list[str]:
        """What was done, in words (the client's and the pictures' wording)."""
        return describe(self.inverted, self.framed, dataset)


def describe(inverted: bool, framed: bool, dataset: str) -> list[str]:
    info = DATASETS.get(dataset)
    title = info.title if info else dataset
    done = []
    if inverted:
        done.append(f"inverted: its background is light, {title}'s is dark")
    if framed:
        box = info.content_box if info and info.content_box else MNIST_DIGIT_BOX
        done.append(f"cropped and centred by mass in {box} x {box}, as {title}")
    return done


def border_is_light(pixels: np.ndarray) -> bool:
    """Whether most of the image's outer ring (1/14 of its side, at least a pixel) is light."""
    h, w = pixels.shape
    ring = max(1, min(h, w) // 14)
    mask = np.ones_like(pixels, dtype=bool)
    mask[ring:h - ring, ring:w - ring] = False
    return bool((pixels[mask] >= LIGHT).mean() > 0.5)


def frame_digit(pixels: np.ndarray, size: tuple[int, int], box_fraction: float = MNIST_BOX_FRACTION) -> np.ndarray:
    """A light-on-dark stroke cropped to its ink, scaled to fit the box (`box_fraction` of
    the field's shorter side), and placed with its centre of mass at the centre of a field of
    `size` (height, width)."""
    height, width = size
    ink = pixels > INK * max(int(pixels.max()), 1)
    if not ink.any():
        return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = box_fraction * min(height, width) / max(crop.shape)
    box = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # (w, h)
    scaled = np.asarray(Image.fromarray(crop).resize(box, Image.Resampling.LANCZOS), dtype=np.float64)
    mass = scaled.sum()
    cy = (scaled.sum(axis=1) @ np.arange(box[1])) / mass
    cx = (scaled.sum(axis=0) @ np.arange(box[0])) / mass
    top = int(np.clip(round((height - 1) / 2 - cy), 0, height - box[1]))
    left = int(np.clip(round((width - 1) / 2 - cx), 0, width - box[0]))
    field_ = np.zeros((height, width), dtype=np.uint8)
    field_[top:top + box[1], left:left + box[0]] = np.clip(scaled, 0, 255).astype(np.uint8)
    return field_


def prepare(image: Image.Image, dataset: str, size: tuple[int, int],
            options: Preprocessing = Preprocessing()) -> Prepared:
    """`image`, already in the model's mode, inverted and framed as a model trained on
    `dataset` (its metadata's) with input (height, width) `size` needs; colour images are
    left as they are. The result is not yet resized: `fit` does that."""
    if image.mode != "L":  # colour models see their images as they are
        return Prepared(image, False, False)
    info = DATASETS.get(dataset)
    pixels = np.asarray(image, dtype=np.uint8)
    invert = options.auto_invert and info is not None and info.light_on_dark and border_is_light(pixels)
    if invert:
        pixels = 255 - pixels
    frame = options.frame and info is not None and info.content_box is not None and pixels.shape != tuple(size)
    if frame:
        pixels = frame_digit(pixels, size, info.content_box / info.image_shape[1])
    return Prepared(Image.fromarray(pixels) if invert or frame else image, invert, frame)


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` at the model's (height, width), resized bilinearly when it is not already."""
    height, width = size
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BILINEAR)
