"""What the checks of int8 files share, free of torch (verify uses it): which tensors are
quantized, differences counted in quantization steps, and the step of a graph output.

A quantized tensor (int8, uint8, int16, uint16) may differ from the reference by at most
QUANT_STEPS steps, a step being one unit of its integer: onnxruntime rescales in float32,
the reference in float64 (or in float32 in another order), so a value within rounding
error of a half step may round either way. Anything more is a real difference, such as
the saturation of 8-bit kernels on CPUs without VNNI (tens of steps).

Node by node, the reference reads each node's quantized inputs from onnxruntime's own
run ("anchored"): a one-step difference upstream is then not carried downstream, so each
node is judged on its own inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .reference.quantization import OPS as QUANTIZATION_OPS
from .reference.quantization import QUANTIZED

QUANT_STEPS = 1  # the most a quantized tensor may differ from the reference, in steps


def is_quantized_dtype(dtype) -> bool:
    return np.dtype(dtype) in QUANTIZED


def is_quantized(proto: onnx.ModelProto) -> bool:
    """Whether the graph has any of the ONNX quantization operators (QDQ or QOperator)."""
    return any(node.op_type in QUANTIZATION_OPS and node.domain in ("", "ai.onnx") for node in proto.graph.node)


def steps_apart(got: np.ndarray, want: np.ndarray) -> int:
    """The largest difference between two quantized tensors, in steps."""
    return int(np.abs(got.astype(np.int64) - want.astype(np.int64)).max(initial=0))


def anchored(name: str, values: dict[str, np.ndarray], anchors: dict[str, np.ndarray] | None) -> np.ndarray | None:
    """The node input `name`: onnxruntime's own value when it is a quantized tensor that
    run exposed, else the reference's."""
    return anchors[name] if is_anchor(name, anchors) else values[name]


def is_anchor(name: str, anchors: dict[str, np.ndarray] | None) -> bool:
    return anchors is not None and name in anchors and is_quantized_dtype(anchors[name].dtype)


def output_steps(proto: onnx.ModelProto) -> dict[str, float]:
    """For each graph output a per-tensor DequantizeLinear computes, its step (the scale),
    as a real value; the tolerance of a whole-graph comparison adds QUANT_STEPS of it."""
    constants = {i.name: i for i in proto.graph.initializer}
    constants.update({n.output[0]: a.t for n in proto.graph.node if n.op_type == "Constant"
                      for a in n.attribute if a.name == "value"})
    outputs = {o.name for o in proto.graph.output}
    steps = {}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in outputs and node.input[1] in constants:
            scale = numpy_helper.to_array(constants[node.input[1]])
            if scale.size == 1:
                steps[node.output[0]] = float(scale.reshape(()))
    return steps
