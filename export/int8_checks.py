"""The checks an int8 file must pass before it is written (the float file's, export/checks.py,
adapted to quantization steps; export/quantized.py says why a step may differ):

1. structure: the float file's check (full_check, strict shape inference, [batch, classes]);
2. batch axis: symbolic, and at batch 1, 7 and 64 the fused run (below) matches the
   reference;
3. nodes: every node of the unoptimized session against the reference, which reads each
   node's quantized inputs from onnxruntime's run; quantized tensors within QUANT_STEPS;
4. test set: every image through the int8 file as users run it (onnxruntime optimized,
   its QDQ groups fused into integer kernels): every quantized tensor those kernels write
   and the logits within QUANT_STEPS of the reference reading the same kernels' inputs
   (verify.compare_fused); the accuracy at most MAX_ACCURACY_DROP below the float file's;
   top-1 agreement with the float file reported. (The reference run alone on the whole
   graph, where one-step differences can add up from layer to layer, is in
   bench/int8_schemes.py: it would double the check's time.)
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from .checks import BATCH_SIZES, CHUNK, CheckFailed
from .runtime import source_module
from .metadata import INPUT_NAME, OUTPUT_NAME
from .quantized import QUANT_STEPS, is_quantized_dtype, output_steps
from .runtime import NODE_ATOL, NODE_RTOL, compare, expose_intermediates, session
from .verify import UNEXPOSED, FusedSessions, compare_fused, fused_difference, reference_values

MAX_ACCURACY_DROP = 0.003  # 0.3 points: the int8 file may lose at most this much accuracy


def logits_step(proto: onnx.ModelProto) -> float:
    """The quantization step of the logits (0 if no DequantizeLinear computes them)."""
    return output_steps(proto).get(OUTPUT_NAME, 0.0)


def fused_steps(proto: onnx.ModelProto, sessions: FusedSessions, x: np.ndarray, where: str
                ) -> tuple[dict[str, float], np.ndarray]:
    """The fused run on `x` against the reference: each tensor's largest difference (in
    quantization steps; a float output without a step, in absolute terms), and the logits.
    Raises naming `where` and the tensor when one is beyond QUANT_STEPS."""
    checks, plain = compare_fused(proto, {INPUT_NAME: x}, sessions)
    checks = [c for c in checks if c.tensor != UNEXPOSED]  # then only the outputs were compared
    for check in checks:
        if check.ok is None:
            raise CheckFailed(f"{where}: {check.tensor}: {check.reason}")
        if not check.ok:
            raise CheckFailed(f"{where}: onnxruntime's fused int8 kernels differ from the reference in {check.kind} "
                              f"{check.tensor!r}: {fused_difference(check)}")
    return {c.tensor: (c.steps if c.steps is not None else c.max_abs) for c in checks}, plain[OUTPUT_NAME]


def check_batch_axis(proto: onnx.ModelProto, sessions: FusedSessions, images: np.ndarray) -> dict:
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not dim0.dim_param:
        raise CheckFailed(f"batch axis: input dimension 0 is fixed at {dim0.dim_value}, not symbolic")
    steps = {}
    for n in sorted({min(n, len(images)) for n in BATCH_SIZES}):
        worst, logits = fused_steps(proto, sessions, images[:n], f"batch axis: batch {n}")
        if logits.shape[0] != n:
            raise CheckFailed(f"batch axis: batch {n} gave logits of shape {logits.shape}")
        steps[n] = max(worst.values())
    return {"dim_param": dim0.dim_param, "logits_step": logits_step(proto), "steps_vs_reference": steps}


def check_nodes(proto: onnx.ModelProto, images: np.ndarray) -> list[dict]:
    """Every node's outputs in onnxruntime (unoptimized, so each QDQ node is there) against
    the reference reading the quantized inputs onnxruntime computed."""
    exposed = expose_intermediates(proto)
    names = [o.name for o in exposed.graph.output]
    ort_values = dict(zip(names, session(exposed, optimize=False).run(names, {INPUT_NAME: images})))
    ref_values, missing = reference_values(proto, {INPUT_NAME: images}, anchors=ort_values)
    if missing:
        name, (_, reason) = next(iter(missing.items()))
        raise CheckFailed(f"reference: {reason} (output {name!r})")
    results = []
    for node in proto.graph.node:
        for name in filter(None, node.output):
            want = ref_values[name]
            max_abs, max_rel, ok = compare(ort_values[name], want)
            results.append({"node": node.name, "op_type": node.op_type, "module": source_module(node), "output": name,
                            "shape": list(want.shape), "dtype": str(want.dtype),
                            "unit": "steps" if is_quantized_dtype(want.dtype) else "abs",
                            "max_abs": max_abs, "max_rel": max_rel, "ok": ok})
    failed = [r for r in results if not r["ok"]]
    if failed:
        r = failed[0]
        how = (f"by {r['max_abs']:.0f} quantization steps (allowed {QUANT_STEPS})" if r["unit"] == "steps" else
               f"(max |diff| {r['max_abs']:.3g}, max rel {r['max_rel']:.3g}; allowed {NODE_ATOL} + {NODE_RTOL} * |ref|)")
        raise CheckFailed(f"nodes: {r['op_type']} node {r['node']!r} ({r['module']}) output {r['output']!r} differs "
                          f"from the NumPy reference {how}")
    return results


class _Tally:
    """Accuracy, agreement with the float file, and the largest fused-run difference of
    each tensor, chunk by chunk."""

    def __init__(self) -> None:
        self.images = 0
        self.agree_float = 0
        self.steps: dict[str, float] = {}
        self.correct = {"int8": 0, "float": 0}

    def add(self, int8: np.ndarray, float_: np.ndarray, steps: dict[str, float], labels) -> None:
        self.images += len(int8)
        top1 = int8.argmax(1)
        self.agree_float += int((top1 == float_.argmax(1)).sum())
        for tensor, value in steps.items():
            self.steps[tensor] = max(self.steps.get(tensor, 0.0), value)
        if labels is not None:
            self.correct["int8"] += int((top1 == labels).sum())
            self.correct["float"] += int((float_.argmax(1) == labels).sum())


def check_test_set(proto: onnx.ModelProto, sessions: FusedSessions, float_sess: ort.InferenceSession,
                   images: np.ndarray, labels: np.ndarray | None, chunk: int = CHUNK) -> dict:
    """The int8 file as users run it, checked against the reference tensor by tensor, and
    the float file, on every image, `chunk` at a time."""
    tally = _Tally()
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        steps, int8 = fused_steps(proto, sessions, x, f"test set: images {start} to {start + len(x) - 1}")
        tally.add(int8, float_sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0], steps,
                  None if labels is None else labels[start : start + chunk])
    n = tally.images
    result = {"images": n, "chunk": chunk, "top1_agreement_with_float": tally.agree_float / n,
              "logits_step": logits_step(proto), "fused_vs_reference_steps": tally.steps}
    if labels is not None:
        accuracy = {k: c / n for k, c in tally.correct.items()}
        result["accuracy"] = accuracy
        drop = accuracy["float"] - accuracy["int8"]
        if drop > MAX_ACCURACY_DROP + 1e-12:
            raise CheckFailed(f"test set: int8 accuracy {100 * accuracy['int8']:.2f}% is {100 * drop:.2f} points "
                              f"below the float file's {100 * accuracy['float']:.2f}% (allowed "
                              f"{100 * MAX_ACCURACY_DROP:.2f}); the int8 file is not written")
    return result
