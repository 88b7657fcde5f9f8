"""Turning request payloads into the (N, 1, 28, 28) float32 batch a model takes.

Every check names the field, the value and what was expected; nothing here trusts a size
from the client before comparing it with the bytes actually sent.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from .errors import invalid, too_large
from .registry import ServedModel

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
MAX_IMAGE_PIXELS = 4096 * 4096  # larger images are refused before decoding (bomb guard)
DTYPES = {"float32": np.dtype("<f4"), "uint8": np.dtype("u1")}


def check_batch_size(n: int, max_images: int, field: str) -> None:
    if n < 1:
        raise invalid(f"{field}: empty batch (0 images); expected at least 1")
    if n > max_images:
        raise too_large(f"{field}: {n} images exceed this server's limit of {max_images} per request")


def batch_from_shape(shape: list[int], field: str, max_images: int) -> int:
    """The batch size N of a (N, 1, 28, 28) or (N, 28, 28) shape, validated."""
    shape = [int(d) for d in shape]
    if any(d < 0 for d in shape):
        raise invalid(f"{field}: shape {shape} has a negative dimension")
    if not (len(shape) == 4 and shape[1:] == [1, IMAGE_SIZE, IMAGE_SIZE]
            or len(shape) == 3 and shape[1:] == [IMAGE_SIZE, IMAGE_SIZE]):
        raise invalid(f"{field}: shape {shape} is not (N, 1, 28, 28) or (N, 28, 28)")
    check_batch_size(shape[0], max_images, field)
    return shape[0]


def normalize_pixels(pixels: np.ndarray, model: ServedModel) -> np.ndarray:
    x = pixels.astype(np.float32) * np.float32(model.pixel_scale)
    return (x - np.float32(model.mean)) / np.float32(model.std)


def decode_array(data: bytes, dtype: str, n: int, model: ServedModel, field: str) -> np.ndarray:
    """Raw little-endian bytes of n images -> normalized float32 (n, 1, 28, 28)."""
    if dtype not in DTYPES:
        raise invalid(f"{field}: dtype {dtype!r} is not supported; expected one of: {', '.join(DTYPES)}")
    expected = n * PIXELS * DTYPES[dtype].itemsize
    if len(data) != expected:
        raise invalid(f"{field}: {len(data)} bytes do not match shape ({n}, 1, 28, 28) of {dtype}, "
                      f"which needs {expected}")
    array = np.frombuffer(data, dtype=DTYPES[dtype]).reshape(n, 1, IMAGE_SIZE, IMAGE_SIZE)
    return from_array(array, model, field)


def from_array(array: np.ndarray, model: ServedModel, field: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return normalize_pixels(array, model)
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int((~finite).sum())
        first = int(np.flatnonzero(~finite)[0])
        raise invalid(f"{field}: {bad} non-finite values (NaN or Inf), the first at flat index {first}; "
                      "expected finite normalized pixels")
    return np.ascontiguousarray(array)


def decode_image(data: bytes, model: ServedModel, field: str) -> np.ndarray:
    """One PNG or JPEG file -> raw uint8 (28, 28), grayscale, resized if needed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise invalid(f"{field}: image of {image.width}x{image.height} pixels exceeds "
                              f"{MAX_IMAGE_PIXELS:,} pixels")
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise invalid(f"{field}: cannot decode {len(data)} bytes as an image ({e}); expected a PNG or "
                      "JPEG file") from None
    gray = image.convert("L")
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def decode_images(files: list[bytes], model: ServedModel, field: str, max_images: int) -> np.ndarray:
    check_batch_size(len(files), max_images, field)
    pixels = np.stack([decode_image(data, model, f"{field}[{i}]") for i, data in enumerate(files)])
    return normalize_pixels(pixels[:, None], model)
