"""Making a photo or a drawing look like the images a model learned from, before it is
resized to the model's input (issue 14, item 12):

- polarity: MNIST and Fashion-MNIST are light on a dark background. For a model trained on
  either (its metadata's dataset), a grayscale image whose border is mostly light (a digit
  drawn on paper, in a drawing app) is inverted, and the answer says so. `auto_invert=False`
  turns this off. Other models' images are left as they are: their data's polarity is unknown.
- framing, for digit models (dataset mnist): MNIST's digits were scaled to fit a 20 x 20 box,
  keeping their aspect ratio, and placed in the 28 x 28 field with their centre of mass at
  its centre. An image of another size (a canvas, a photo) is framed the same way: cropped
  to the stroke, scaled, centred by mass. An image already at the model's size is taken as
  framed, so a 28 x 28 MNIST digit is answered exactly as its tensor is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .registry import ServedModel

LIGHT = 128  # a pixel at least this bright is light
BOX_FRACTION = 20 / 28  # MNIST's 20 x 20 box in the 28 x 28 field
INK = 0.1  # a pixel brighter than this fraction of the brightest is stroke, for the crop
LIGHT_ON_DARK = ("mnist", "fashion-mnist")  # datasets whose images are light on a dark background
DIGITS = ("mnist",)  # datasets of digits framed in a 20 x 20 box by mass


@dataclass(frozen=True)
class Preprocessing:
    auto_invert: bool = True  # invert a grayscale image on a light background
    frame: bool = True  # crop and centre digits by mass (digit models, images not yet at the model's size)


def border_is_light(pixels: np.ndarray) -> bool:
    """Whether most of the image's outer ring (1/14 of its side, at least a pixel) is light."""
    h, w = pixels.shape
    ring = max(1, min(h, w) // 14)
    mask = np.ones_like(pixels, dtype=bool)
    mask[ring:h - ring, ring:w - ring] = False
    return bool((pixels[mask] >= LIGHT).mean() > 0.5)


def frame_digit(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A light-on-dark stroke cropped to its ink, scaled to fit the box, and placed with its
    centre of mass at the centre of a field of `size` (height, width)."""
    height, width = size
    ink = pixels > INK * max(int(pixels.max()), 1)
    if not ink.any():
        return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = BOX_FRACTION * min(height, width) / max(crop.shape)
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


@dataclass
class Preparer:
    """decode_images' `prepare` hook for one request; it notes, image by image, what it did."""

    model: ServedModel
    options: Preprocessing = Preprocessing()
    inverted: list[bool] = field(default_factory=list)
    framed: list[bool] = field(default_factory=list)

    def __call__(self, image: Image.Image) -> Image.Image:
        classifier = self.model.classifier()
        if image.mode != "L":  # colour models see their images as they are
            self.inverted.append(False)
            self.framed.append(False)
            return image
        pixels = np.asarray(image, dtype=np.uint8)
        dataset = self.model.metadata.get("dataset", "")
        invert = self.options.auto_invert and dataset in LIGHT_ON_DARK and border_is_light(pixels)
        if invert:
            pixels = 255 - pixels
        size = (classifier.height, classifier.width)
        frame = self.options.frame and dataset in DIGITS and pixels.shape != size
        if frame:
            pixels = frame_digit(pixels, size)
        self.inverted.append(invert)
        self.framed.append(frame)
        return Image.fromarray(pixels) if invert or frame else image
