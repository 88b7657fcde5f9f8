"""A model file's graph as typed records, read without the onnx package (protos/onnx_subset.proto):
the nodes with their attributes and exporter metadata, and the weights (initializers and
Constant nodes, in the file or in external data beside it), decoded to NumPy on first use."""

from __future__ import annotations

import ast
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..gen import onnx_subset_pb2 as onnx_subset

# TensorProto.DataType -> (NumPy dtype, the typed field holding it when there is no raw_data)
DTYPES = {
    1: (np.float32, "float_data"), 2: (np.uint8, "int32_data"), 3: (np.int8, "int32_data"),
    4: (np.uint16, "int32_data"), 5: (np.int16, "int32_data"), 6: (np.int32, "int32_data"),
    7: (np.int64, "int64_data"), 9: (np.bool_, "int32_data"), 10: (np.float16, "int32_data"),
    11: (np.float64, "double_data"), 12: (np.uint32, "uint64_data"), 13: (np.uint64, "uint64_data"),
}
FLOAT_TYPES = (1, 10, 11)
EXTERNAL = 1  # TensorProto.DataLocation
# AttributeProto.AttributeType -> how its value is read
ATTRIBUTE_VALUES = {1: lambda a: a.f, 2: lambda a: a.i, 3: lambda a: a.s.decode("utf-8", "replace"),
                    6: lambda a: tuple(a.floats), 7: lambda a: tuple(a.ints),
                    8: lambda a: tuple(s.decode("utf-8", "replace") for s in a.strings)}
NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # torch.onnx (dynamo): the module path of each node
REWRITE_RULES = "pkg.onnxscript.rewriter.rule_name"  # e.g. FuseBatchNormIntoConv


class GraphError(ValueError):
    """The file cannot be read as the graph it claims to be (a weight's bytes, say)."""


@dataclass(frozen=True)
class Node:
    name: str  # the node's name, or its first output's when it has none (as /features reports it)
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Mapping[str, object]
    scopes: tuple[str, ...] = ()  # torch.onnx's name scopes: '', module, submodule, ..., op
    rewrites: str = ""  # the graph rewrites that made this node, e.g. FuseBatchNormIntoConv

    def attr(self, name: str, default=None):
        return self.attributes.get(name, default)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]  # the graph inputs that are not weights
    outputs: tuple[str, ...]
    weight_shapes: Mapping[str, tuple[int, ...]]  # every initializer and Constant, without decoding it
    _protos: Mapping[str, onnx_subset.TensorProto] = field(repr=False, default_factory=dict)
    _folder: Path = Path(".")
    _decoded: dict = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def producer(self, tensor: str) -> Node | None:
        return next((n for n in self.nodes if tensor in n.outputs), None)

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def is_weight(self, tensor: str) -> bool:
        return tensor in self.weight_shapes

    def is_float_weight(self, tensor: str) -> bool:
        proto = self._protos.get(tensor)
        return proto is not None and proto.data_type in FLOAT_TYPES

    def weight(self, tensor: str) -> np.ndarray:
        """An initializer's or a Constant's values, decoded once."""
        with self._lock:
            if tensor not in self._decoded:
                self._decoded[tensor] = _decode(self._protos[tensor], self._folder)
            return self._decoded[tensor]


def read_graph(proto: onnx_subset.ModelProto, folder: Path) -> Graph:
    """The graph of a parsed model file; `folder` is where its external data lies."""
    graph = proto.graph
    tensors = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        attributes = {a.name: _attribute(a) for a in node.attribute}
        if node.op_type == "Constant" and node.output and isinstance(attributes.get("value"), onnx_subset.TensorProto):
            tensors[node.output[0]] = attributes["value"]
        meta = {p.key: p.value for p in node.metadata_props}
        nodes.append(Node(node.name or (node.output[0] if node.output else node.op_type), node.op_type,
                          tuple(node.input), tuple(node.output), attributes, _scopes(meta.get(NAME_SCOPES, "")),
                          meta.get(REWRITE_RULES, "")))
    return Graph(tuple(nodes), tuple(i.name for i in graph.input if i.name not in tensors),
                 tuple(o.name for o in graph.output), {name: tuple(t.dims) for name, t in tensors.items()},
                 tensors, folder)


def _attribute(a: onnx_subset.AttributeProto):
    if a.type == 4 or (not a.type and a.HasField("t")):
        return a.t
    read = ATTRIBUTE_VALUES.get(a.type)
    if read is not None:
        return read(a)
    # An attribute without its type (older writers): whichever field is set.
    if a.ints:
        return tuple(a.ints)
    if a.floats:
        return tuple(a.floats)
    if a.HasField("s"):
        return a.s.decode("utf-8", "replace")
    if a.HasField("f"):
        return a.f
    return a.i


def _scopes(text: str) -> tuple[str, ...]:
    """torch.onnx writes the scopes as a Python list literal, e.g. "['', 'conv1', 'conv2d']"."""
    try:
        value = ast.literal_eval(text) if text else ()
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return ()
    return tuple(s for s in value if isinstance(s, str)) if isinstance(value, (list, tuple)) else ()


def _decode(t: onnx_subset.TensorProto, folder: Path) -> np.ndarray:
    if t.data_type not in DTYPES:
        raise GraphError(f"weight {t.name!r}: data type {t.data_type} is not supported here")
    dtype, typed = DTYPES[t.data_type]
    shape = tuple(t.dims)
    if t.data_location == EXTERNAL:
        data = _external(t, folder)
    elif t.HasField("raw_data"):
        data = t.raw_data
    else:
        values = getattr(t, typed)
        if t.data_type == 10:  # float16 travels as its bits in int32_data
            array = np.array(values, np.uint16).view(np.float16)
        else:
            array = np.array(values, dtype)
        return _shaped(array, shape, t.name)
    return _shaped(np.frombuffer(data, np.dtype(dtype).newbyteorder("<")).astype(dtype), shape, t.name)


def _shaped(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise GraphError(f"weight {name!r}: {array.size} values for shape {list(shape)}")
    return array.reshape(shape)


def _external(t: onnx_subset.TensorProto, folder: Path) -> bytes:
    info = {e.key: e.value for e in t.external_data}
    path = (folder / info.get("location", "")).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise GraphError(f"weight {t.name!r}: external data {info.get('location')!r} is not a file beside the model")
    offset, length = int(info.get("offset", 0)), info.get("length")
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(int(length)) if length is not None else f.read()
