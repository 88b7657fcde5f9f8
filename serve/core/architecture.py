"""The architecture at a glance: every node of a served model's graph, with its output shape
(from one run of the tapped session on zeros), for a convolution or pooling the output-size
formula filled in with the layer's own n, p, f and s (checked against that shape), and its
parameter count with the formula it comes from: (f × f × C_in + 1) × C_out for a
convolution, (in + 1) × out for a dense layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .explain import LayerRef, layer_refs
from .features import FeatureMaps
from .geometry import GLOBAL_POOLS, Axis, spatial_axes
from .onnx_graph import Graph, GraphError, Node
from .registry import ServedModel
from .signature import DTYPE_OF

WINDOWED = ("Conv", "MaxPool", "AveragePool", *GLOBAL_POOLS)
FOLDED_BATCH_NORM = "FuseBatchNormIntoConv"


@dataclass(frozen=True)
class Params:
    count: int
    formula: str  # e.g. "(5 × 5 × 1 + 1) × 6 = 156"; "" for a layer without weights
    tensors: tuple[tuple[str, tuple[int, ...]], ...]  # the weights counted: name and shape


@dataclass(frozen=True)
class Row:
    layer: LayerRef
    inputs: tuple[str, ...]  # the data tensors it reads (weights aside)
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    axes: tuple[Axis, ...]  # a convolution's or pooling's spatial axes, else ()
    size_matches: bool | None  # the formula's sizes are the real ones (None: no formula)
    params: Params
    folded: str = ""  # the batch norm folded into this convolution by the exporter, by its module name


@dataclass(frozen=True)
class Architecture:
    model: str
    version: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    rows: tuple[Row, ...]
    total_params: int  # every weight the rows count, each once
    declared_params: int | None  # the num_params of the file's metadata (PyTorch's count), if any


def architecture(maps: FeatureMaps, model: ServedModel) -> Architecture:
    graph = maps.graph(model)
    refs = layer_refs(graph)
    feed = {spec.name: np.zeros([d if d > 0 else 1 for d in spec.shape], DTYPE_OF[spec.datatype])
            for spec in model.signature.inputs}
    names = [*feed, *(t for node in graph.nodes if node.op != "Constant" for t in node.outputs if t)]
    shapes = {name: tuple(a.shape) for name, a in maps.tensors(model, feed, names).items()}
    shapes.update(graph.weight_shapes)
    rows, counted = [], {}
    for node in graph.nodes:
        if node.op == "Constant":
            continue
        data = [t for t in node.inputs if t and not graph.is_weight(t)]
        row = _row(graph, node, refs[node.name], data, shapes)
        rows.append(row)
        counted.update(row.params.tensors)
    declared = model.metadata.get("num_params", "")
    return Architecture(model.name, model.version, tuple((n, shapes[n]) for n in graph.inputs if n in shapes),
                        tuple(rows), sum(int(np.prod(s, dtype=np.int64)) for s in counted.values()),
                        int(declared) if declared.isdigit() else None)


def _row(graph: Graph, node: Node, ref: LayerRef, data: list[str], shapes: dict) -> Row:
    input_shape = shapes.get(data[0]) if data else None
    output_shape = shapes.get(node.outputs[0]) if node.outputs else None
    axes: tuple[Axis, ...] = ()
    if node.op in WINDOWED and input_shape and len(input_shape) > 2:
        kernel = shapes.get(node.inputs[1], ())[2:] if node.op == "Conv" and len(node.inputs) > 1 else None
        try:
            axes = spatial_axes(node, input_shape, kernel)
        except GraphError:
            axes = ()
    matches = (tuple(a.out for a in axes) == tuple(output_shape[2:])) if axes and output_shape else None
    folded = node.scopes[-2] if FOLDED_BATCH_NORM in node.rewrites and len(node.scopes) >= 3 else ""
    return Row(ref, tuple(data), input_shape, output_shape, axes, matches, _params(graph, node, shapes), folded)


def _weights(graph: Graph, node: Node, shapes: dict) -> list[tuple[str, tuple[int, ...]]]:
    """The node's float weights: initializers and Constants, and for a Conv or a dense layer
    its weight and bias even when a node makes them (a DequantizeLinear of int8 weights)."""
    out = []
    for i, name in enumerate(node.inputs):
        made = i in (1, 2) and node.op in ("Conv", "Gemm", "MatMul") and name in shapes
        if name and (graph.is_float_weight(name) or (made and not graph.is_weight(name))):
            out.append((name, tuple(shapes[name])))
    return out


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _params(graph: Graph, node: Node, shapes: dict) -> Params:
    weights = _weights(graph, node, shapes)
    count = sum(_size(s) for _, s in weights)
    if not weights:
        return Params(0, "", ())
    formula = FORMULAS.get(node.op, _sum_formula)(node, weights)
    return Params(count, f"{formula} = {count:,}" if formula else "", tuple(weights))


def _conv_formula(node: Node, weights) -> str:
    (_, w), *bias = weights
    if len(w) != 4:
        return _sum_formula(node, weights)
    out_channels, per_group, kh, kw = w
    group = int(node.attr("group", 1))
    c_in = f"{per_group * group}/{group}" if group > 1 else f"{per_group}"
    if bias and _size(bias[0][1]) == out_channels:
        return f"({kh} × {kw} × {c_in} + 1) × {out_channels}"
    return f"{kh} × {kw} × {c_in} × {out_channels}" + "".join(f" + {_size(s)}" for _, s in bias)


def _dense_formula(node: Node, weights) -> str:
    (_, w), *bias = weights
    if len(w) != 2:
        return _sum_formula(node, weights)
    units, inputs = (w[0], w[1]) if node.attr("transB", 0) else (w[1], w[0])
    if bias and _size(bias[0][1]) == units:
        return f"({inputs} + 1) × {units}"
    return f"{inputs} × {units}" + "".join(f" + {_size(s)}" for _, s in bias)


def _batch_norm_formula(node: Node, weights) -> str:
    sizes = {_size(s) for _, s in weights}
    return f"{len(weights)} × {sizes.pop()}" if len(sizes) == 1 else _sum_formula(node, weights)


def _sum_formula(node: Node, weights) -> str:
    return " + ".join(f"{_size(s):,}" for _, s in weights) if len(weights) > 1 else ""


FORMULAS = {"Conv": _conv_formula, "Gemm": _dense_formula, "MatMul": _dense_formula,
            "BatchNormalization": _batch_norm_formula}
