"""One decoding and validation path for every front end, driven by the model's signature:
request tensors (raw bytes or typed values) and encoded images become the arrays the model
takes.

Every check names the field, the value and what was expected; nothing here trusts a size
from the client before comparing it with the bytes actually sent.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from zoo.preprocess import fit

from .errors import invalid, too_large
from .limits import MIB, DecodeBudget, Limits
from .records import InputTensor
from .registry import ServedModel
from .signature import DTYPE_OF, DYNAMIC, Classifier, TensorSpec

MAX_IMAGE_PIXELS = 4096 * 4096  # larger images are refused before decoding (bomb guard)
FLOATS = ("FP16", "FP32", "FP64")


def check_batch_size(n: int, max_images: int, field: str) -> None:
    if n < 1:
        raise invalid(f"{field}: empty batch (0 images); expected at least 1")
    if n > max_images:
        raise too_large(f"{field}: {n} images exceed this server's limit of {max_images} per request")


def check_shape(spec: TensorSpec, sent: Sequence[int], field: str, max_images: int, batched: bool,
                squeezable: bool = False) -> tuple[int, ...]:
    """The shape sent, checked against the one the input declares: dynamic axes free,
    fixed axes equal, the batch within the limits. `squeezable`: a (N, H, W) shape stands
    for (N, 1, H, W)."""
    shape = [int(d) for d in sent]
    if any(d < 0 for d in shape):
        raise invalid(f"{field}: shape {shape} has a negative dimension")
    if squeezable and len(shape) == len(spec.shape) - 1:
        shape.insert(1, 1)
    if len(shape) != len(spec.shape) or any(want not in (DYNAMIC, got) for want, got in zip(spec.shape, shape)):
        free = " (-1: any size)" if DYNAMIC in spec.shape else ""
        raise invalid(f"{field}: shape {[int(d) for d in sent]} does not match input {spec.name!r}, "
                      f"which takes {list(spec.shape)}{free}")
    if batched:
        check_batch_size(shape[0], max_images, field)
    return tuple(shape)


def _check_finite(array: np.ndarray, field: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad = int((~finite).sum())
        first = int(np.flatnonzero(~finite)[0])
        raise invalid(f"{field}: {bad} non-finite values (NaN or Inf), the first at flat index {first}; "
                      "expected finite values")


def _from_values(values: Sequence, dtype: np.dtype, field: str) -> np.ndarray:
    """Typed values (a protobuf repeated field, a JSON list) as `dtype`, refusing any that
    the type cannot hold (300 for UINT8, say)."""
    if dtype.kind == "f":
        return np.asarray(values, dtype=dtype)
    wide = np.asarray(values, dtype=np.float64 if dtype.kind == "b" else None)
    array = wide.astype(dtype)
    if wide.size and not np.array_equal(array, wide):
        bad = int(np.flatnonzero(array != wide)[0])
        raise invalid(f"{field}: value {wide.flat[bad]} at flat index {bad} does not fit {dtype.name}")
    return array


def decode_tensor(model: ServedModel, spec: TensorSpec, tensor: InputTensor, max_images: int,
                  any_batch: bool = False, finite: bool = False) -> np.ndarray:
    """One request tensor as the array for input `spec`. An image classifier's input also
    takes UINT8 raw pixels, normalized here as an image would be. `any_batch`: a batch of
    any size even for a model of fixed batch 1 (Predict, which runs such images one by one).
    `finite`: refuse NaN and Inf (Predict, which answers probabilities); otherwise every
    value goes to the model as sent, as Triton passes any bit pattern."""
    if tensor.refusal:
        raise invalid(tensor.refusal)
    classifier = model.signature.classifier
    image_input = classifier is not None and classifier.input is spec
    allowed = (spec.datatype, "UINT8") if image_input else (spec.datatype,)
    if tensor.datatype not in allowed:
        expected = f"{spec.datatype} (normalized) or UINT8 (raw pixels)" if image_input else spec.datatype
        raise invalid(f"{tensor.field}.datatype: {tensor.datatype[:20]!r} is not supported for input "
                      f"{spec.name!r}; expected {expected}")
    batched = model.signature.batched or any_batch
    if any_batch and not model.signature.batched:
        spec = dataclasses.replace(spec, shape=(DYNAMIC, *spec.shape[1:]))
    shape = check_shape(spec, tensor.shape, f"{tensor.field}.shape", max_images, batched,
                        squeezable=image_input and classifier.channels == 1)
    count = math.prod(shape)
    dtype = DTYPE_OF[tensor.datatype]
    if tensor.data is not None:
        expected = count * dtype.itemsize
        if len(tensor.data) != expected:
            raise invalid(f"{tensor.data_field}: {len(tensor.data)} bytes do not match shape {shape} of "
                          f"{dtype.name}, which needs {expected}")
        array = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
        field = tensor.data_field
    else:
        values = tensor.values if tensor.values is not None else ()
        if len(values) != count:
            raise invalid(f"{tensor.values_field}: {len(values)} values do not match shape "
                          f"{[int(d) for d in tensor.shape]}, which needs {count}")
        array = _from_values(values, dtype, tensor.values_field).reshape(shape)
        field = tensor.values_field
    if image_input and tensor.datatype == "UINT8":
        return normalize_pixels(array, model)
    if finite and tensor.datatype in FLOATS:
        _check_finite(array, field)
    return np.ascontiguousarray(array)


def decode_inputs(model: ServedModel, tensors: Sequence[InputTensor], max_images: int,
                  field: str = "inputs") -> dict[str, np.ndarray]:
    """A request's tensors as the model's feed: each input exactly once, each checked."""
    specs = model.signature.inputs
    if len(tensors) != len(specs):
        raise invalid(f"{field}: {len(tensors)} tensors given; {model.name} takes {len(specs)} ({_names(specs)})")
    feed = {}
    for tensor in tensors:
        spec = model.signature.input(tensor.name)
        if spec is None:
            raise invalid(f"{tensor.field}.name: {tensor.name[:80]!r} is not an input of {model.name}; "
                          f"expected {_names(specs)}")
        if spec.name in feed:
            raise invalid(f"{tensor.field}.name: input {spec.name!r} is given twice")
        feed[spec.name] = decode_tensor(model, spec, tensor, max_images)
    if len(feed) > 1 and model.signature.batched and len({len(a) for a in feed.values()}) > 1:
        sizes = ", ".join(f"{name}: {len(a)}" for name, a in feed.items())
        raise invalid(f"{field}: the inputs' batch sizes differ ({sizes}); expected one batch size")
    return feed


def _names(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(repr(s.name) for s in specs)


def resolve_outputs(model: ServedModel, wanted: Sequence[tuple[str, int]], field: str = "outputs"
                    ) -> list[tuple[int, int]]:
    """(output index, classification count or 0) per requested (name, count), in the
    requested order; every output, unclassified, when none is requested."""
    outputs = model.signature.outputs
    if not wanted:
        return [(i, 0) for i in range(len(outputs))]
    names = [o.name for o in outputs]
    resolved, seen = [], set()
    for i, (name, k) in enumerate(wanted):
        if name not in names:
            raise invalid(f"{field}[{i}].name: {name[:80]!r} is not an output of {model.name}; expected "
                          f"{', '.join(map(repr, names))}")
        if name in seen:
            raise invalid(f"{field}[{i}].name: output {name!r} is asked for twice")
        seen.add(name)
        spec = outputs[names.index(name)]
        if k < 0:
            raise invalid(f"{field}[{i}].parameters.classification: {k} is negative")
        if k and len(spec.shape) != 2:
            raise invalid(f"{field}[{i}].parameters.classification: output {name!r} of shape {list(spec.shape)} "
                          "is not (batch, classes)")
        classes = spec.shape[1] if k and spec.shape[1] != DYNAMIC else k
        resolved.append((names.index(name), min(int(k), classes)))
    return resolved


def normalize_pixels(pixels: np.ndarray, model: ServedModel) -> np.ndarray:
    """Raw pixels (N, C, H, W) -> the model's input: scaled, then normalized per channel
    (zoo.normalization: the export's and the zoo's own normalization)."""
    return model.normalization.apply(pixels)


# Bytes per pixel Pillow holds for an image of each mode: multi-band modes are stored as
# 4 bytes a pixel (RGB padded), 16-bit grayscale as 2, 32-bit ones as 4, the rest as 1.
STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


def _open(data: bytes, field: str) -> Image.Image:
    """The image's header only: nothing is decoded yet."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
    except UnidentifiedImageError:  # its message names the BytesIO object, not the field
        raise invalid(f"{field}: cannot decode {len(data)} bytes as an image (no PNG or JPEG signature; "
                      f"the first bytes are {data[:8].hex(' ') or 'none'}); expected a PNG or JPEG file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise invalid(f"{field}: cannot decode {len(data)} bytes as an image ({e}); expected a PNG or "
                      "JPEG file") from None
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise invalid(f"{field}: image of {image.width}x{image.height} pixels exceeds "
                      f"{MAX_IMAGE_PIXELS:,} pixels")
    return image


def decoded_bytes(image: Image.Image, classifier: Classifier) -> int:
    """What decoding `image` takes at its peak, from its header: the decoded pixels plus
    their copy converted to the model's channels."""
    pixels = image.width * image.height
    return pixels * (STORED_BYTES.get(image.mode, 4) + STORED_BYTES.get(classifier.mode, 4))


def decode_image(image: Image.Image, data_size: int, classifier: Classifier, field: str,
                 prepare: Callable[[Image.Image], Image.Image] | None = None) -> np.ndarray:
    """One opened PNG or JPEG -> raw uint8 (C, H, W) in the model's channels and size.
    `prepare` (serve.core.preprocess) may turn the converted image first: invert, frame."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise invalid(f"{field}: cannot decode {data_size} bytes as an image ({e}); expected a PNG or "
                      "JPEG file") from None
    converted = image.convert(classifier.mode)
    image.close()  # its pixels go now, not when the request ends
    if prepare is not None:
        converted = prepare(converted)
    pixels = np.asarray(fit(converted, (classifier.height, classifier.width)), dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def decode_images(files: Sequence[bytes], model: ServedModel, field: str, limits: Limits, budget: DecodeBudget,
                  time_left_s: float | None = None,
                  prepare: Callable[[Image.Image], Image.Image] | None = None) -> np.ndarray:
    """Encoded images -> the classifier's normalized input batch (N, C, H, W). What decoding
    will take is read from every header first: over the request's limit it is refused,
    and it waits for room in the server's decoding budget before any pixel is decoded."""
    classifier = model.classifier()
    check_batch_size(len(files), limits.max_request_images, field)
    images = [_open(data, f"{field}[{i}]") for i, data in enumerate(files)]
    need = sum(decoded_bytes(image, classifier) for image in images)
    if need > limits.max_decode_bytes:
        sizes = ", ".join(f"{im.width}x{im.height} {im.mode}" for im in images[:4]) + (", ..." if len(images) > 4 else "")
        raise too_large(f"{field}: decoding these images ({sizes}) takes {need / MIB:.1f} MiB, over this server's "
                        f"limit of {limits.max_decode_bytes / MIB:.0f} MiB per request")
    with budget.reserve(need, time_left_s, field):
        pixels = np.stack([decode_image(image, len(data), classifier, f"{field}[{i}]", prepare)
                           for i, (image, data) in enumerate(zip(images, files))])
    return normalize_pixels(pixels, model)
