"""What a learner calls each node of a graph: its kind (convolution, max pooling, dense layer,
...) and a name such as conv1, pool1, fc1, taken from the model's own names where the file
has them (the PyTorch module of a weight, torch.onnx's name scopes, a TorchScript node path),
else counted per kind."""

from __future__ import annotations

from dataclasses import dataclass

from .onnx_graph import Graph, Node


@dataclass(frozen=True)
class Kind:
    key: str  # what the page translates, e.g. "max_pool"
    prefix: str  # a counted name's stem, e.g. "pool" for pool1


KINDS = {
    "Conv": Kind("convolution", "conv"),
    "ConvTranspose": Kind("transposed_convolution", "deconv"),
    "MaxPool": Kind("max_pool", "pool"),
    "AveragePool": Kind("average_pool", "pool"),
    "GlobalMaxPool": Kind("global_max_pool", "pool"),
    "GlobalAveragePool": Kind("global_average_pool", "pool"),
    "Gemm": Kind("dense", "fc"),
    "MatMul": Kind("dense", "fc"),
    "BatchNormalization": Kind("batch_norm", "bn"),
    "Flatten": Kind("flatten", "flatten"),
    "Reshape": Kind("reshape", "reshape"),
    "Add": Kind("add", "add"),
    "Dropout": Kind("dropout", "dropout"),
    "Softmax": Kind("softmax", "softmax"),
    "ReduceMean": Kind("mean", "mean"),
    "Concat": Kind("concat", "concat"),
}
# Element-wise activation functions: the value at a position depends on that position alone.
ACTIVATIONS = ("Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish",
               "Tanh", "Softplus", "Softsign", "Mish", "Clip")
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization")


def kind(op: str) -> Kind:
    if op in ACTIVATIONS:
        return Kind("activation", op.lower())
    return KINDS.get(op, Kind(op.lower(), op.lower()))


def own_name(node: Node, graph: Graph) -> str:
    """The model's own name for a node, or '' when the file has none."""
    if node.op in WEIGHTED and len(node.inputs) > 1:  # the PyTorch module of its weight: conv1.weight
        weight = node.inputs[1]
        if graph.is_weight(weight) and weight.endswith(".weight") and len(weight) > len(".weight"):
            return weight[:-len(".weight")]
    if len(node.scopes) >= 3 and node.scopes[-2]:  # '', module path..., op
        return node.scopes[-2]
    parts = [p for p in node.name.split("/") if p]
    if node.name.startswith("/") and len(parts) >= 2:  # TorchScript: /conv1/Conv
        return parts[-2]
    return ""


def titles(graph: Graph) -> dict[str, str]:
    """Every node's name as a learner reads it, unique within the graph, by node name."""
    counts: dict[str, int] = {}
    taken: set[str] = set()
    out = {}
    for node in graph.nodes:
        prefix = kind(node.op).prefix
        counts[prefix] = counts.get(prefix, 0) + 1
        title = own_name(node, graph) or f"{prefix}{counts[prefix]}"
        unique, n = title, 1
        while unique in taken:
            n += 1
            unique = f"{title}_{n}"
        taken.add(unique)
        out[node.name] = unique
    return out
