"""Evaluate a whole onnx.ModelProto with the reference operators, node by node."""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import activations, convolution, pooling, quantization, tensor_ops
from .errors import UnsupportedError


OPS: dict[str, Callable] = {
    "Conv": convolution.conv,
    "MaxPool": pooling.max_pool,
    "AveragePool": pooling.average_pool,
    "GlobalAveragePool": pooling.global_average_pool,
    "GlobalMaxPool": pooling.global_max_pool,
    "Relu": activations.relu,
    "Tanh": activations.tanh,
    "Sigmoid": activations.sigmoid,
    "Clip": activations.clip,
    "LeakyRelu": activations.leaky_relu,
    "HardSigmoid": activations.hard_sigmoid,
    "HardSwish": activations.hard_swish,
    "Identity": tensor_ops.identity,
    "Add": tensor_ops.add,
    "Sub": tensor_ops.sub,
    "Mul": tensor_ops.mul,
    "Div": tensor_ops.div,
    "MatMul": tensor_ops.matmul,
    "Gemm": tensor_ops.gemm,
    "Flatten": tensor_ops.flatten,
    "Reshape": tensor_ops.reshape,
    "Softmax": tensor_ops.softmax,
    "LogSoftmax": tensor_ops.log_softmax,
    "BatchNormalization": tensor_ops.batch_normalization,
    "Dropout": tensor_ops.dropout,
    "Constant": tensor_ops.constant,
    "Pad": tensor_ops.pad,
    "Shape": tensor_ops.shape,
    "Gather": tensor_ops.gather,
    "Unsqueeze": tensor_ops.unsqueeze,
    "Squeeze": tensor_ops.squeeze,
    "Concat": tensor_ops.concat,
    "Cast": tensor_ops.cast,
    "CastLike": tensor_ops.cast_like,
    "Expand": tensor_ops.expand,
    "Transpose": tensor_ops.transpose,
    "ReduceMean": tensor_ops.reduce_mean,
    **quantization.OPS,  # QuantizeLinear, DequantizeLinear, QLinearConv, ... (int8 models)
}


def _keyword_names(fn: Callable) -> set[str] | None:
    """The attribute names `fn` accepts, or None when it takes any (**kwargs)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY}


def _max_inputs(fn: Callable) -> int | None:
    """How many inputs `fn` accepts, or None when any number (*inputs)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def run_node(node: onnx.NodeProto, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    """Evaluate one node; returns its outputs as a list."""
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedError(f"node {node.name!r}: operator domain {node.domain!r} is not supported")
    fn = OPS.get(node.op_type)
    if fn is None:
        raise UnsupportedError(
            f"node {node.name!r}: operator {node.op_type} is not supported "
            f"(supported: {', '.join(sorted(OPS))})"
        )
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            attrs[key] = value.decode()
    accepted = _keyword_names(fn)
    unknown = set() if accepted is None else set(attrs) - accepted
    if unknown:
        raise UnsupportedError(
            f"node {node.name!r}: {node.op_type} attribute(s) {', '.join(sorted(unknown))} not supported"
        )
    while inputs and inputs[-1] is None:  # trailing optional inputs that were left out
        inputs = inputs[:-1]
    most = _max_inputs(fn)
    if most is not None and len(inputs) > most:
        raise UnsupportedError(
            f"node {node.name!r}: {node.op_type} input(s) {', '.join(node.input[most:len(inputs)])} "
            f"not supported (only the first {most})"
        )
    try:
        result = fn(*inputs, **attrs)
    except ValueError as e:
        raise ValueError(f"node {node.name!r} ({node.op_type}): {e}") from None
    except UnsupportedError as e:
        raise UnsupportedError(f"node {node.name!r} ({node.op_type}): {e}") from None
    outputs = list(result) if isinstance(result, tuple) else [result]
    if len(node.output) > len(outputs) and any(node.output[len(outputs):]):
        raise UnsupportedError(
            f"node {node.name!r}: {node.op_type} output(s) {', '.join(node.output[len(outputs):])} "
            f"not supported (only the first {len(outputs)})"
        )
    return outputs[: len(node.output)]


def run(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, intermediates: bool = False
) -> dict[str, np.ndarray]:
    """Run `model` on `feeds`. Returns the graph outputs by name, or, with
    `intermediates=True`, every tensor the graph computes (inputs and weights excluded)."""
    graph = model.graph
    values: dict[str, np.ndarray | None] = {"": None}
    values.update({init.name: numpy_helper.to_array(init) for init in graph.initializer})
    inputs = [i.name for i in graph.input if i.name not in values]
    missing = [name for name in inputs if name not in feeds]
    if missing:
        raise ValueError(f"missing feeds for graph inputs {missing}; got {sorted(feeds)}")
    values.update(feeds)
    computed: dict[str, np.ndarray] = {}
    for node in graph.node:  # the ONNX spec requires nodes in topological order
        args = []
        for name in node.input:
            if name not in values:
                raise ValueError(f"node {node.name!r}: input {name!r} is not computed before it")
            args.append(values[name])
        for name, value in zip(node.output, run_node(node, args)):
            if name:
                values[name] = value
                computed[name] = value
    if intermediates:
        return computed
    return {o.name: values[o.name] for o in graph.output}
