"""The data plane's requests and answers, in no protocol's terms.

A front end converts its protocol's request into one of these, calls the data plane, and
converts the answer back (serve.grpc: protobuf messages; serve.http: JSON and binary
tensors). Nothing here knows a wire format beyond KServe's own tensor vocabulary
(datatypes, shapes, BYTES elements), which both front ends speak.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .preprocess import Preprocessing
from .ranking import Ranked
from .signature import TensorSpec

if TYPE_CHECKING:
    from .tracing import RequestTrace


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Deadline:
    """What a request's client allows: seconds until its deadline (None: no deadline), and
    whether it is still there (False once it cancelled or timed out: its work is dropped)."""

    time_left_s: float | None = None
    is_active: Callable[[], bool] = _always


@dataclass(frozen=True)
class InputTensor:
    """One input of a request as a front end received it, before any check: raw
    little-endian bytes (`data`) or typed values (`values`), and the field names the
    client knows them by, for the messages."""

    name: str
    datatype: str
    shape: Sequence[int]
    field: str  # e.g. "inputs[0]" or "tensor"
    data: bytes | None = None
    data_field: str = ""  # e.g. "raw_input_contents[0]"
    values: Sequence | None = None
    values_field: str = ""  # e.g. "inputs[0].contents.fp32_contents"
    # Why the front end could not take this tensor (a type its protocol names but the core
    # has no datatype for): INVALID_ARGUMENT when the data plane decodes it, after the
    # model was found, so an unknown or unready model is still NOT_FOUND or UNAVAILABLE.
    refusal: str = ""


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    classification: int = 0  # Triton's classification extension: the top k as strings (0: the tensor)


@dataclass(frozen=True)
class InferRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: Sequence[InputTensor] = ()
    outputs: Sequence[RequestedOutput] = ()  # none: every output, as tensors
    deadline: Deadline = field(default_factory=Deadline)
    trace: RequestTrace | None = None  # its trace, when tracing is on (serve.core.tracing)


def bytes_elements(texts: Sequence[str]) -> bytes:
    """BYTES elements on the wire: each a 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in (t.encode() for t in texts))


@dataclass(frozen=True)
class OutputTensor:
    """One output of an answer: numbers (`array`, contiguous, in the output's datatype) or,
    for a classification, BYTES strings (`texts`)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray | None = None
    texts: Sequence[str] | None = None

    def raw(self) -> bytes:
        """The tensor's bytes as KServe's binary forms carry them."""
        return bytes_elements(self.texts) if self.texts is not None else self.array.tobytes()

    def values(self) -> list:
        """The tensor's elements, flat, as JSON carries them."""
        return list(self.texts) if self.texts is not None else self.array.ravel().tolist()


@dataclass(frozen=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: tuple[OutputTensor, ...]


@dataclass(frozen=True)
class PredictRequest:
    """Images (encoded files) or one tensor of raw pixels or normalized values, for an
    image classifier; `images_field` names the images in messages."""

    model_name: str
    model_version: str = ""
    images: Sequence[bytes] | None = None
    tensor: InputTensor | None = None
    images_field: str = "images"
    top_k: int = 1
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    deadline: Deadline = field(default_factory=Deadline)
    trace: RequestTrace | None = None  # its trace, when tracing is on (serve.core.tracing)


@dataclass(frozen=True)
class Prediction:
    ranked: Ranked
    inverted: bool  # the image was light on dark and was inverted
    framed: bool  # the digit was cropped and centred by mass


@dataclass(frozen=True)
class PredictResponse:
    model_name: str
    model_version: str
    provider: str
    predictions: tuple[Prediction, ...]


@dataclass(frozen=True)
class FeaturesRequest:
    model_name: str
    model_version: str = ""
    image: bytes = b""
    preprocessing: Preprocessing = field(default_factory=Preprocessing)


@dataclass(frozen=True)
class FeatureMap:
    name: str  # the node's name in the graph (or its output's, when unnamed)
    op: str  # its ONNX op type, e.g. Conv
    array: np.ndarray  # its output for the image, (1, C, H, W)


@dataclass(frozen=True)
class FeaturesResponse:
    model_name: str
    inverted: bool
    framed: bool
    input: np.ndarray  # the normalized image the model saw, (1, C, H, W)
    layers: tuple[FeatureMap, ...]


@dataclass(frozen=True)
class Position:
    """A value of a layer's output (the explain view): the layer (its node name or its
    learner's name, conv1), a channel (a dense layer's unit), a row and a column (None for
    a dense layer)."""

    layer: str
    channel: int
    y: int | None = None
    x: int | None = None


@dataclass(frozen=True)
class ExplainRequest:
    model_name: str
    position: Position
    model_version: str = ""
    image: bytes = b""
    preprocessing: Preprocessing = field(default_factory=Preprocessing)


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]
    providers: tuple[str, ...]  # the execution providers of the ready model versions


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    provider: str


@dataclass(frozen=True)
class RepositoryEntry:
    name: str
    version: str = ""
    state: str = ""  # READY or UNAVAILABLE, in Triton's words; "" for a model of the repository not loaded
    reason: str = ""


@dataclass(frozen=True)
class ModelSummary:
    """What our Predictor API tells of a model version (ListModels, GetModel)."""

    name: str
    version: str
    ready: bool
    error: str
    provider: str
    dataset: str
    labels: tuple[str, ...]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_accuracy: float | None  # None: the file states none
    metadata: dict[str, str]
