"""Explain one value of a feature map with the numbers the model really computed: for a
convolution, the window of the layer input under the kernel (zeros in the padding; strides,
dilations and groups as the ONNX spec says), the kernel, the element-wise products, their sum
plus the bias, and onnxruntime's value at that position; for a pooling layer, the window
and its largest element or its mean; for a dense layer (Gemm), the input vector, the
weights of that unit, the products and the sum. Then the activation that follows, if any.

Every tensor comes from one run of the feature maps' tapped session (serve/core/features.py),
the same numbers /features draws; the weights come from the model file (serve/core/onnx_graph.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import failed_precondition, invalid
from .features import SHOWN_OPS, FeatureMaps
from .geometry import Axis, spatial_axes
from .layers import ACTIVATIONS, kind, titles
from .onnx_graph import Graph, GraphError, Node
from .records import Position
from .registry import ServedModel

POOLS = ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")
EXPLAINED = (*SHOWN_OPS, "Gemm")
MAX_PLANES = 8  # input channels whose whole plane comes with the answer, for drawing the window on it,
PLANE_VALUES = 65_536  # as many as make this many values (at least one plane, however large)
MAX_WALK = 32  # nodes followed back from a layer's input to the layer that made it


@dataclass(frozen=True)
class LayerRef:
    name: str  # the node's name, as /features reports it
    title: str  # as a learner reads it: conv1, pool1, fc1
    op: str
    kind: str


@dataclass(frozen=True)
class Source:
    """The layer input: a tensor made by `layer` (None: the model's input) through `via`."""

    tensor: str
    layer: LayerRef | None
    via: tuple[str, ...]  # ops between that layer's output and this input, e.g. ("Relu",)
    shape: tuple[int, ...]
    channels: tuple[int, ...]  # the input channels the window reads
    planes: np.ndarray | None  # the first few of those channels in full, (k, H, W): see _planes


@dataclass(frozen=True)
class Window:
    top: int | None  # the window's first row and column in the layer input (negative: padding)
    left: int | None
    rows: tuple[int, ...]  # every row and column it reads (dilated, strided)
    cols: tuple[int, ...]
    values: np.ndarray  # (channels, rows, cols), 0 where it lies in the padding; (inputs,) for a dense layer
    padding: np.ndarray  # True where it lies in the padding (or past the end, in ceil mode)


@dataclass(frozen=True)
class Activation:
    layer: LayerRef
    value: float  # onnxruntime's output of the activation at the same position


@dataclass(frozen=True)
class Explanation:
    model: str
    version: str
    layer: LayerRef
    position: Position
    output_shape: tuple[int, ...]
    source: Source
    window: Window
    value: float  # what onnxruntime computed at the position: the feature map's value
    attributes: dict
    axes: tuple[Axis, ...]  # the window's geometry per spatial axis (n, k, s, d, pads, output size); () if dense
    activation: Activation | None
    consumers: tuple[LayerRef, ...]  # the nodes that read this layer's output
    # a convolution or a dense layer
    kernel: np.ndarray | None = None
    bias: float | None = None
    products: np.ndarray | None = None
    channel_sums: tuple[float, ...] | None = None  # the products summed per input channel
    sum: float | None = None  # products summed, plus the bias
    # a pooling layer
    pool: str | None = None  # "max" or "average"
    winner: tuple[int, int] | None = None  # max: (row, col) in the window
    count: int | None = None  # average: the divisor
    mean: float | None = None
    maximum: float | None = None
    # the preprocessing of the image (the data plane's)
    inverted: bool = False
    framed: bool = False


def layer_refs(graph: Graph) -> dict[str, LayerRef]:
    names = titles(graph)
    return {n.name: LayerRef(n.name, names[n.name], n.op, kind(n.op).key) for n in graph.nodes}


def find_layer(graph: Graph, refs: dict[str, LayerRef], wanted: str, model: ServedModel) -> Node:
    """The node named `wanted` (its node name or its learner's name), explainable, or a 400
    listing the explainable layers."""
    node = graph.node(wanted) or next((graph.node(r.name) for r in refs.values() if r.title == wanted), None)
    if node is not None and node.op in EXPLAINED:
        return node
    valid = ", ".join(f"{refs[n.name].title} ({n.name})" if refs[n.name].title != n.name else n.name
                      for n in graph.nodes if n.op in EXPLAINED)
    if node is None:
        raise invalid(f"layer: {wanted[:80]!r} is not a layer of {model.name}; expected one of {valid or 'none'}")
    raise invalid(f"layer: {refs[node.name].title} ({node.name}) is a {node.op}; explain covers "
                  f"{', '.join(EXPLAINED)} layers: {valid or 'none in this model'}")


def explain(maps: FeatureMaps, model: ServedModel, x: np.ndarray, position: Position) -> Explanation:
    """Explain the value at `position` for the normalized image batch `x` (one image)."""
    graph = maps.graph(model)
    refs = layer_refs(graph)
    node = find_layer(graph, refs, position.layer, model)
    activation = _activation(graph, node)
    inputs = [t for t in node.inputs[:3] if t and not graph.is_weight(t)]
    wanted = [*inputs, node.outputs[0], *([activation.outputs[0]] if activation else [])]
    tensors = maps.tensors(model, {model.input_name: x}, wanted)
    output = tensors[node.outputs[0]]
    index = _check_position(output, position, refs[node.name])
    source_tensor = node.inputs[0]
    try:
        explainer = EXPLAINERS[node.op]
        parts = explainer(graph, node, tensors, tensors[source_tensor], index)
    except GraphError as e:
        raise failed_precondition(f"model {model.name!r}: cannot explain {refs[node.name].title} ({e})") from None
    source_layer, via = _source(graph, source_tensor)
    planes, source_channels, axes = parts.pop("planes"), parts.pop("channels"), parts.pop("axes", ())
    return Explanation(
        model=model.name, version=model.version, layer=refs[node.name], position=position,
        output_shape=tuple(output.shape),
        source=Source(source_tensor, refs[source_layer.name] if source_layer else None, via,
                      tuple(tensors[source_tensor].shape), source_channels, planes),
        value=float(output[index]), attributes=_attributes(node), axes=axes,
        activation=Activation(refs[activation.name], float(tensors[activation.outputs[0]][index])) if activation else None,
        consumers=tuple(refs[c.name] for c in graph.consumers(node.outputs[0])), **parts)


def _check_position(output: np.ndarray, position: Position, ref: LayerRef) -> tuple[int, ...]:
    """The index of the position in the layer's output, or a 400 naming the valid range."""
    channels = output.shape[1]
    what = "units" if output.ndim == 2 else "channels"
    if not 0 <= position.channel < channels:
        raise invalid(f"channel: {position.channel} is out of range for {ref.title}'s {channels} {what}; "
                      f"expected 0 to {channels - 1}")
    if output.ndim == 2:
        return 0, position.channel
    if output.ndim != 4:
        raise failed_precondition(f"layer {ref.title}: output of shape {list(output.shape)}; explain covers "
                                  "2-D maps (N, C, H, W)")
    height, width = output.shape[2:]
    for name, value, size in (("y", position.y, height), ("x", position.x, width)):
        if value is None:
            raise invalid(f"{name}: required for {ref.title} ({ref.op}), an integer 0 to {size - 1}")
        if not 0 <= value < size:
            raise invalid(f"{name}: {value} is out of range for {ref.title}'s {height} x {width} map; "
                          f"expected 0 to {size - 1}")
    return 0, position.channel, position.y, position.x


def _activation(graph: Graph, node: Node) -> Node | None:
    consumers = graph.consumers(node.outputs[0])
    return consumers[0] if len(consumers) == 1 and consumers[0].op in ACTIVATIONS else None


def _source(graph: Graph, tensor: str) -> tuple[Node | None, tuple[str, ...]]:
    """The nearest feature-map layer (or dense layer) upstream of `tensor`, and the ops between."""
    via = []
    for _ in range(MAX_WALK):
        node = graph.producer(tensor)
        if node is None:
            break
        if node.op in EXPLAINED:
            return node, tuple(reversed(via))
        via.append(node.op)
        data = [t for t in node.inputs if t and not graph.is_weight(t)]
        if not data:
            break
        tensor = data[0]
    return None, tuple(reversed(via))


def _attributes(node: Node) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in node.attributes.items()
            if isinstance(v, (int, float, str, tuple))}


def _operand(graph: Graph, tensors: dict, name: str) -> np.ndarray:
    """A weight from the file, or from the run where a node makes it (a DequantizeLinear, say)."""
    return graph.weight(name) if graph.is_weight(name) else tensors[name]


def _window(plane_stack: np.ndarray, rows: list[int], cols: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """plane_stack[:, rows][:, :, cols], with 0 (and True in the mask) outside it."""
    height, width = plane_stack.shape[1:]
    r, c = np.array(rows), np.array(cols)
    inside = ((r >= 0) & (r < height))[:, None] & ((c >= 0) & (c < width))[None, :]
    values = plane_stack[:, np.clip(r, 0, height - 1)][:, :, np.clip(c, 0, width - 1)]
    return np.where(inside[None], values, 0).astype(plane_stack.dtype), ~inside


def _planes(data: np.ndarray, first: int, channels: int) -> np.ndarray:
    """The layer input's planes of the window's first channels: at most MAX_PLANES, and no
    more than make PLANE_VALUES values (a large input comes with one)."""
    size = data.shape[2] * data.shape[3]
    return data[0, first:first + max(1, min(channels, MAX_PLANES, PLANE_VALUES // max(size, 1)))]


def _spatial_window(axes: tuple[Axis, ...], y: int, x: int, stack: np.ndarray) -> tuple[Window, list]:
    if len(axes) != 2:
        raise GraphError(f"{len(axes)} spatial axes; explain covers 2-D layers")
    rows, cols = axes[0].taps(y), axes[1].taps(x)
    values, padding = _window(stack, rows, cols)
    return Window(rows[0], cols[0], tuple(rows), tuple(cols), values, padding), [rows, cols]


def _conv(graph: Graph, node: Node, tensors: dict, data: np.ndarray, index: tuple[int, ...]) -> dict:
    weight = _operand(graph, tensors, node.inputs[1])
    bias = _operand(graph, tensors, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    _, channel, y, x = index
    group = int(node.attr("group", 1))
    per_group_in, per_group_out = weight.shape[1], weight.shape[0] // group
    first = (channel // per_group_out) * per_group_in
    channels = tuple(range(first, first + per_group_in))
    axes = spatial_axes(node, data.shape, tuple(weight.shape[2:]))
    window, _ = _spatial_window(axes, y, x, data[0, first:first + per_group_in])
    kernel = weight[channel]
    products = window.values.astype(np.float64) * kernel.astype(np.float64)
    sums = products.reshape(len(channels), -1).sum(axis=1)
    b = float(bias[channel]) if bias is not None else None
    return dict(window=window, kernel=kernel, bias=b, products=products, channel_sums=tuple(float(s) for s in sums),
                sum=float(sums.sum() + (b or 0.0)), channels=channels, axes=axes,
                planes=_planes(data, first, per_group_in))


def _pool(graph: Graph, node: Node, tensors: dict, data: np.ndarray, index: tuple[int, ...]) -> dict:
    _, channel, y, x = index
    axes = spatial_axes(node, data.shape)
    window, (rows, cols) = _spatial_window(axes, y, x, data[0, channel:channel + 1])
    inside = ~window.padding
    values = window.values[0].astype(np.float64)
    parts = dict(window=window, channels=(channel,), planes=data[0, channel:channel + 1], axes=axes)
    if node.op in ("MaxPool", "GlobalMaxPool"):
        flat = np.where(inside, values, -np.inf).ravel()
        winner = int(np.argmax(flat))
        return dict(parts, pool="max", winner=divmod(winner, len(cols)), maximum=float(flat[winner]))
    count = int(inside.sum())
    if node.attr("count_include_pad", 0):  # the padding counts, not what lies past it in ceil mode
        count = int(np.prod([sum(-a.p_begin <= t < a.n + a.p_end for t in taps)
                             for a, taps in zip(axes, (rows, cols))]))
    total = float(values[inside].sum())
    return dict(parts, pool="average", count=count, sum=total, mean=total / count)


def _dense(graph: Graph, node: Node, tensors: dict, data: np.ndarray, index: tuple[int, ...]) -> dict:
    if data.ndim != 2 or node.attr("transA", 0):
        raise GraphError(f"Gemm of a {data.ndim}-D input (transA {node.attr('transA', 0)}); explain covers (N, in)")
    weight = _operand(graph, tensors, node.inputs[1])
    by_unit = weight if node.attr("transB", 0) else weight.T  # (units, inputs)
    unit = index[1]
    bias = _operand(graph, tensors, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    # C broadcasts to (N, units): a vector, a row or a scalar
    b = float(beta * np.broadcast_to(bias, (1, by_unit.shape[0]))[0, unit]) if bias is not None else None
    weights, vector = by_unit[unit], data[0]
    products = alpha * vector.astype(np.float64) * weights.astype(np.float64)
    window = Window(None, None, (), (), vector, np.zeros(vector.shape, bool))
    return dict(window=window, kernel=weights, bias=b, products=products, channel_sums=(float(products.sum()),),
                sum=float(products.sum() + (b or 0.0)), channels=(), planes=None)


EXPLAINERS = {"Conv": _conv, "Gemm": _dense, **{op: _pool for op in POOLS}}
