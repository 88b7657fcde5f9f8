"""Feature maps: the output of every convolution and pooling layer of a model, for the
playground. Computed by a second onnxruntime session of the same model file in which every
node's output is a graph output too (onnxruntime returns only graph outputs), so that the
explain view (serve/core/explain.py) reads the very numbers the maps show, and the tensors
between them, from the same run.

Making them outputs needs an edit of the model file; the server has no onnx package, so
the file is read with a subset of onnx.proto's schema (protos/onnx_subset.proto: the nodes,
their attributes, the weights and the graph outputs), keeping every other field as protobuf
unknown fields, written back unchanged. The session and the parsed graph are made on first
use, on the CPU, and kept.

In an int8 (QDQ) model a layer's output goes through QuantizeLinear and DequantizeLinear
before the next layer reads it: the map shown is that DequantizeLinear's output, the float
values the int8 model really carries (multiples of its quantization step)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from google.protobuf.message import DecodeError

from ..gen import onnx_subset_pb2 as onnx_subset
from .device import first_line
from .errors import failed_precondition
from .onnx_graph import Graph, read_graph
from .records import FeatureMap
from .registry import ServedModel

SHOWN_OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
# onnxruntime reads a model with external data from bytes only when told where that data is.
EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"


@dataclass(frozen=True)
class _Tapped:
    session: ort.InferenceSession
    layers: tuple[tuple[str, str, str], ...]  # (tensor, op, node name)
    graph: Graph


def _tap(model: ServedModel) -> _Tapped:
    """A session of `model` with every shown layer's output as a graph output."""
    try:
        proto = onnx_subset.ModelProto.FromString(model.path.read_bytes())
    except (OSError, DecodeError) as e:
        raise failed_precondition(f"model {model.name!r}: feature maps unavailable, cannot read "
                                  f"{model.path.name} ({e})") from None
    graph = proto.graph
    parsed = read_graph(proto, model.path.parent)
    layers = tuple((_dequantized(graph, node.output[0]), node.op_type, node.name or node.output[0])
                   for node in graph.node if node.op_type in SHOWN_OPS and node.output)
    outputs = {o.name for o in graph.output}
    tapped = dict.fromkeys(t for node in graph.node if node.op_type != "Constant" for t in node.output if t)
    graph.output.extend(onnx_subset.ValueInfoProto(name=t) for t in tapped if t not in outputs)
    options = ort.SessionOptions()
    options.add_session_config_entry(EXTERNAL_DATA_FOLDER, str(model.path.parent))
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own failure, e.g. an op it cannot run on the CPU
        raise failed_precondition(f"model {model.name!r}: feature maps unavailable ({first_line(e)})") from None
    return _Tapped(session, layers, parsed)


def _dequantized(graph, tensor: str) -> str:
    """The DequantizeLinear output of `tensor` when its only reader is a QuantizeLinear
    whose output a DequantizeLinear reads (a QDQ model); else `tensor` itself."""
    readers = [n for n in graph.node if tensor in n.input]
    if len(readers) != 1 or readers[0].op_type != "QuantizeLinear":
        return tensor
    quantized = readers[0].output[0]
    dequantize = next((n for n in graph.node if n.op_type == "DequantizeLinear" and quantized in n.input[:1]), None)
    return dequantize.output[0] if dequantize is not None else tensor


class FeatureMaps:
    def __init__(self) -> None:
        self._tapped: dict[ServedModel, _Tapped] = {}  # by version object: a reloaded file is another
        self._lock = threading.Lock()

    def _get(self, model: ServedModel) -> _Tapped:
        with self._lock:
            if model not in self._tapped:
                self._tapped[model] = _tap(model)
            return self._tapped[model]

    def discard(self, model: ServedModel) -> None:
        """A retired version's session dropped."""
        with self._lock:
            self._tapped.pop(model, None)

    def compute(self, model: ServedModel, x: np.ndarray) -> list[FeatureMap]:
        """Every shown layer's output for the normalized image batch `x`, in graph order."""
        tapped = self._get(model)
        arrays = tapped.session.run([t for t, _, _ in tapped.layers], {model.input_name: x})
        return [FeatureMap(name, op, array) for (_, op, name), array in zip(tapped.layers, arrays)]

    def graph(self, model: ServedModel) -> Graph:
        """The model's graph: nodes, attributes, weights."""
        return self._get(model).graph

    def tensors(self, model: ServedModel, feed: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        """The named tensors (node outputs or graph inputs) of one run of the tapped session."""
        fetched = [n for n in dict.fromkeys(names) if n not in feed]
        arrays = self._get(model).session.run(fetched, feed) if fetched else []
        return {**{n: feed[n] for n in names if n in feed}, **dict(zip(fetched, arrays))}
