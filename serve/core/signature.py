"""A model's signature, read from the model file itself (as Triton's auto-complete does):
every input and output with its name, KServe datatype and shape, whether it takes a
dynamic batch axis, and, when it looks like one, its image-classifier view for Predict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# onnxruntime's type names -> KServe datatypes; the numpy dtype is the wire format (little-endian).
DATATYPES = {
    "tensor(float)": ("FP32", "<f4"), "tensor(double)": ("FP64", "<f8"), "tensor(float16)": ("FP16", "<f2"),
    "tensor(int8)": ("INT8", "i1"), "tensor(int16)": ("INT16", "<i2"), "tensor(int32)": ("INT32", "<i4"),
    "tensor(int64)": ("INT64", "<i8"), "tensor(uint8)": ("UINT8", "u1"), "tensor(uint16)": ("UINT16", "<u2"),
    "tensor(uint32)": ("UINT32", "<u4"), "tensor(uint64)": ("UINT64", "<u8"), "tensor(bool)": ("BOOL", "?"),
}
DTYPE_OF = {datatype: np.dtype(dtype) for datatype, dtype in DATATYPES.values()}
DYNAMIC = -1  # a symbolic or unknown dimension
IMAGE_CHANNELS = {1: "L", 3: "RGB"}  # channels -> the PIL mode an image is converted to


class SignatureError(ValueError):
    """A model whose inputs or outputs this server cannot carry (a string tensor, say)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe datatype, e.g. FP32
    shape: tuple[int, ...]  # DYNAMIC (-1) for a symbolic axis

    @property
    def dtype(self) -> np.dtype:
        return DTYPE_OF[self.datatype]


@dataclass(frozen=True)
class Classifier:
    """The view Predict needs: one NCHW image input of 1 or 3 channels and fixed H x W, and
    an output of class scores (batch, classes)."""

    input: TensorSpec
    output: TensorSpec
    channels: int
    height: int
    width: int
    num_classes: int

    @property
    def mode(self) -> str:
        return IMAGE_CHANNELS[self.channels]


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # Every input and output has a dynamic first axis: requests can be batched together.
    batched: bool
    classifier: Classifier | None

    @property
    def fixed_batch(self) -> int:
        """The batch every run must have, for a model without a dynamic batch axis (0 if none)."""
        first = self.inputs[0].shape[:1] if self.inputs else ()
        return 0 if self.batched or not first or first[0] == DYNAMIC else first[0]

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)


def _spec(arg, kind: str) -> TensorSpec:
    if arg.type not in DATATYPES:
        raise SignatureError(f"{kind} {arg.name!r} is of type {arg.type}, which this server cannot carry; "
                             f"supported: {', '.join(DATATYPES)}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else DYNAMIC for d in (arg.shape or ()))
    return TensorSpec(arg.name, DATATYPES[arg.type][0], shape)


def _classifier(inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> Classifier | None:
    if len(inputs) != 1 or not outputs:
        return None
    image, scores = inputs[0], outputs[0]
    if image.datatype != "FP32" or len(image.shape) != 4 or image.shape[0] not in (DYNAMIC, 1):
        return None
    _, channels, height, width = image.shape
    if channels not in IMAGE_CHANNELS or height < 1 or width < 1:
        return None
    if len(scores.shape) != 2 or scores.shape[1] < 1:
        return None
    return Classifier(image, scores, channels, height, width, scores.shape[1])


def read_signature(session) -> Signature:
    """The signature of an onnxruntime InferenceSession."""
    inputs = tuple(_spec(a, "input") for a in session.get_inputs())
    outputs = tuple(_spec(a, "output") for a in session.get_outputs())
    batched = bool(inputs) and all(t.shape[:1] == (DYNAMIC,) for t in inputs + outputs)
    return Signature(inputs, outputs, batched, _classifier(inputs, outputs))

