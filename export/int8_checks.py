"""The checks an int8 file must pass before it is written (the float file's, export/checks.py,
adapted to quantization steps; export/quantized.py says why a step may differ):

1. structure: the float file's check (full_check, strict shape inference, [batch, classes]);
2. batch axis: symbolic, and at batch 1, 7 and 64 onnxruntime (optimized: the fused int8
   kernels users run) agrees with the reference within QUANT_STEPS of the output's step;
3. nodes: every node of the unoptimized session against the reference, which reads each
   node's quantized inputs from onnxruntime's run; quantized tensors within QUANT_STEPS;
4. test set: every image through the int8 file (onnxruntime, optimized), the float file
   and the reference: the reference within QUANT_STEPS output steps of onnxruntime; the
   accuracy at most MAX_ACCURACY_DROP below the float file's; top-1 agreement with the
   float file reported.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from .checks import BATCH_SIZES, CHUNK, CheckFailed, run_reference
from .exporter import source_module
from .metadata import INPUT_NAME, OUTPUT_NAME
from .quantized import QUANT_STEPS, is_quantized_dtype, output_steps
from .runtime import NODE_ATOL, NODE_RTOL, compare, expose_intermediates, session
from .verify import output_tolerance, reference_values

MAX_ACCURACY_DROP = 0.003  # 0.3 points: the int8 file may lose at most this much accuracy


def logits_step(proto: onnx.ModelProto) -> float:
    """The quantization step of the logits (0 if no DequantizeLinear computes them)."""
    return output_steps(proto).get(OUTPUT_NAME, 0.0)


def in_steps(diff: float, step: float) -> float:
    return round(diff / step, 3) if step else float("nan")


def check_against_reference(got: np.ndarray, want: np.ndarray, step: float, where: str) -> float:
    """The largest |got - want| of the logits, after checking it is within QUANT_STEPS of
    the output step (plus the float tolerance); raises naming `where` otherwise."""
    diff = np.abs(got.astype(np.float64) - want)
    allowed = output_tolerance(want, step)
    if not np.all(diff <= allowed):
        worst = float(diff.max())
        raise CheckFailed(f"{where}: onnxruntime's int8 logits differ from the reference by {worst:.3g} "
                          f"({in_steps(worst, step)} quantization steps of {step:.3g}; allowed {QUANT_STEPS})")
    return float(diff.max(initial=0))


def check_batch_axis(proto: onnx.ModelProto, sess: ort.InferenceSession, images: np.ndarray) -> dict:
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not dim0.dim_param:
        raise CheckFailed(f"batch axis: input dimension 0 is fixed at {dim0.dim_value}, not symbolic")
    step = logits_step(proto)
    steps = {}
    for n in sorted({min(n, len(images)) for n in BATCH_SIZES}):
        x = images[:n]
        (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x})
        want = run_reference(proto, x)[OUTPUT_NAME]
        if got.shape != want.shape:
            raise CheckFailed(f"batch axis: batch {n} gave shape {got.shape}, the reference {want.shape}")
        steps[n] = in_steps(check_against_reference(got, want, step, f"batch axis: batch {n}"), step)
    return {"dim_param": dim0.dim_param, "logits_step": step, "steps_vs_reference": steps}


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
    """Accuracy, agreement with the float file and with the reference, chunk by chunk."""

    def __init__(self) -> None:
        self.images = 0
        self.agree_float = 0
        self.agree_reference = 0
        self.max_vs_reference = 0.0
        self.correct = {"int8": 0, "float": 0}

    def add(self, int8: np.ndarray, float_: np.ndarray, ref: np.ndarray, diff: float, labels) -> None:
        self.images += len(int8)
        top1 = int8.argmax(1)
        self.agree_float += int((top1 == float_.argmax(1)).sum())
        self.agree_reference += int((top1 == ref.argmax(1)).sum())
        self.max_vs_reference = max(self.max_vs_reference, diff)
        if labels is not None:
            self.correct["int8"] += int((top1 == labels).sum())
            self.correct["float"] += int((float_.argmax(1) == labels).sum())


def check_test_set(proto: onnx.ModelProto, sess: ort.InferenceSession, float_sess: ort.InferenceSession,
                   images: np.ndarray, labels: np.ndarray | None, chunk: int = CHUNK) -> dict:
    """The int8 file (onnxruntime, optimized), the float file and the int8 reference on
    every image, `chunk` at a time."""
    step = logits_step(proto)
    tally = _Tally()
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        int8 = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        ref = run_reference(proto, x)[OUTPUT_NAME]
        diff = check_against_reference(int8, ref, step, f"test set: images {start} to {start + len(x) - 1}")
        tally.add(int8, float_sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0], ref, diff,
                  None if labels is None else labels[start : start + chunk])
    n = tally.images
    result = {"images": n, "chunk": chunk, "top1_agreement_with_float": tally.agree_float / n,
              "reference": {"max_abs_logit_diff": tally.max_vs_reference, "logits_step": step,
                            "max_steps": in_steps(tally.max_vs_reference, step),
                            "top1_agreement": tally.agree_reference / n}}
    if labels is not None:
        accuracy = {k: c / n for k, c in tally.correct.items()}
        result["accuracy"] = accuracy
        drop = accuracy["float"] - accuracy["int8"]
        if drop > MAX_ACCURACY_DROP + 1e-12:
            raise CheckFailed(f"test set: int8 accuracy {100 * accuracy['int8']:.2f}% is {100 * drop:.2f} points "
                              f"below the float file's {100 * accuracy['float']:.2f}% (allowed "
                              f"{100 * MAX_ACCURACY_DROP:.2f}); the int8 file is not written")
    return result
