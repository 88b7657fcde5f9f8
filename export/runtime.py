"""onnxruntime sessions, every intermediate exposed, and the element-wise comparison the
node checks use: shared by the export checks and by verify, and free of torch, so verify
runs where only onnx and onnxruntime are installed."""

from __future__ import annotations

import ast
import copy

import numpy as np
import onnx
import onnxruntime as ort

from .quantized import QUANT_STEPS, is_quantized_dtype, steps_apart

NODE_RTOL, NODE_ATOL = 1e-4, 1e-5  # per element: |ort - ref| <= atol + rtol * |ref|


def session(proto: onnx.ModelProto, optimize: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if not optimize:  # keep every node as exported, so intermediates mean what they say
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def expose_intermediates(proto: onnx.ModelProto, strict: bool = True) -> onnx.ModelProto:
    """A copy of `proto` whose graph outputs include every node output, typed by shape
    inference (strict, or lenient for files that need it: then an output inference could
    not type is exposed by name alone, and onnxruntime fills in its type)."""
    inferred = onnx.shape_inference.infer_shapes(copy.deepcopy(proto), strict_mode=strict)
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    outputs = {o.name for o in inferred.graph.output}
    for node in inferred.graph.node:
        for name in node.output:
            if name and name not in outputs:
                inferred.graph.output.append(known.get(name) or onnx.ValueInfoProto(name=name))
                outputs.add(name)
    return inferred


def compare(got: np.ndarray, want: np.ndarray) -> tuple[float, float, bool]:
    """(max |diff|, max relative diff, ok); for a quantized (8- or 16-bit integer) tensor
    both differences are in quantization steps, at most QUANT_STEPS."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return float("inf"), float("inf"), False
    if is_quantized_dtype(want.dtype):
        steps = steps_apart(got, want)
        return float(steps), float(steps), steps <= QUANT_STEPS
    if not np.issubdtype(want.dtype, np.floating):
        same = bool(np.array_equal(got, want))
        return (0.0 if same else float("inf")), (0.0 if same else float("inf")), same
    diff = np.abs(got.astype(np.float64) - want)
    ok = bool(np.all(diff <= NODE_ATOL + NODE_RTOL * np.abs(want)))
    rel = diff / np.maximum(np.abs(want), NODE_ATOL)
    return float(diff.max(initial=0)), float(rel.max(initial=0)), ok


def source_module(node: onnx.NodeProto) -> str:
    """The PyTorch module a node was exported from (torch.onnx records its name scopes),
    or the node's own name when there is no record."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return scopes[-2] if len(scopes) >= 2 else node.name
    return node.name
