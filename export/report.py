"""The short report `python -m export` prints for each export (the full one is JSON)."""

from __future__ import annotations

from .pipeline import ExportResult, worst_node
from .int8_checks import MAX_ACCURACY_DROP
from .quantized import QUANT_STEPS

SOURCES = {"shipped": "shipped weights", "trained": "your weights", "custom": "your model"}


def format_result(result: ExportResult) -> str:
    r = result.report
    if r.get("precision") == "int8":
        return format_int8(result)
    lines = [f"{result.name}  (opset {r['opset']}; {SOURCES[r['source']]}"
             + (f" {r['weights_file']}" if r.get("weights_file") else "") + ")"]
    if "structure" in r:
        lines.append(structure_line(r["structure"]))
    if "batch_axis" in r:
        b = r["batch_axis"]
        errs = " / ".join(f"{v:.1e}" for v in b["max_abs_vs_torch"].values())
        sizes = " / ".join(map(str, b["max_abs_vs_torch"]))
        lines.append(f"  batch axis  symbolic '{b['dim_param']}'; batch {sizes} vs PyTorch max |diff| {errs}")
    if "nodes" in r:
        w = worst_node(r)
        lines.append(f"  nodes       {len(r['nodes'])}/{len(r['nodes'])} node outputs match the NumPy "
                     f"reference; worst: {w['op_type']} in {w['module']} max |diff| {w['max_abs']:.1e} "
                     f"(rel {w['max_rel']:.1e})")
    if "test_set" in r:
        lines += test_set_lines(r)
    if result.passed:
        lines.append(f"  size        {r['onnx_bytes'] / 1024:,.1f} KiB")
    else:
        lines.append(f"  FAILED      {result.failure}")
    lines.append("  wrote       " + ", ".join(str(p) for p in result.written))
    return "\n".join(lines)


def structure_line(s: dict) -> str:
    return (f"  structure   onnx.checker full_check and strict shape inference pass; {s['nodes']} nodes; "
            f"output {s['inferred_output_shape']}")


def test_set_lines(r: dict) -> list[str]:
    t = r["test_set"]
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in t["max_abs_logit_diff"].items())
    what = "test set  " if r["checked_on_kind"] == "test set" else f"{r['checked_on_kind']:<10}"
    lines = [f"  {what}  {r['checked_on']}: top-1 agreement 100% for all pairs; max |logit diff| {diffs}"]
    if "accuracy" in t:
        card = f" (model card: {100 * r['card_accuracy']:.2f}%)" if r.get("card_accuracy") is not None else ""
        lines.append(f"              accuracy {100 * t['accuracy']['onnxruntime']:.2f}%{card}")
    return lines


def format_int8(result: ExportResult) -> str:
    """The int8 file's report: how it was quantized, then the same four checks, each in
    quantization steps where the int8 file computes in steps."""
    r = result.report
    lines = [f"{result.name}  (opset {r['opset']}; int8 of {r['float_model']}, {SOURCES[r['source']]})"]
    if "quantize" in r:
        lines.append(f"  quantized   static QDQ, uint8 activations per tensor, int8 weights per output channel within +-64; "
                     f"calibrated on {r['calibration']['description']}")
    if "structure" in r:
        lines.append(structure_line(r["structure"]))
    if "batch_axis" in r:
        b = r["batch_axis"]
        steps = " / ".join(f"{v:g}" for v in b["steps_vs_reference"].values())
        sizes = " / ".join(map(str, b["steps_vs_reference"]))
        lines.append(f"  batch axis  symbolic '{b['dim_param']}'; batch {sizes}: the fused int8 kernels within {steps} "
                     f"quantization steps of the reference")
    if "nodes" in r:
        lines.append("  nodes       " + int8_nodes_line(r["nodes"]))
    if "test_set" in r:
        lines += int8_test_set_lines(r)
    if result.passed:
        ratio = f": {r['float_onnx_bytes'] / r['onnx_bytes']:.1f}x smaller" if r.get("float_onnx_bytes") else ""
        float_size = f" (the float file {r['float_onnx_bytes'] / 1024:,.1f} KiB{ratio})" if r.get("float_onnx_bytes") else ""
        lines.append(f"  size        {r['onnx_bytes'] / 1024:,.1f} KiB{float_size}")
    else:
        lines.append(f"  FAILED      {result.failure}")
    lines.append("  wrote       " + ", ".join(str(p) for p in result.written))
    return "\n".join(lines)


def int8_nodes_line(nodes: list[dict]) -> str:
    quantized = [n for n in nodes if n["unit"] == "steps"]
    floats = [n for n in nodes if n["unit"] == "abs"]
    one_step = sum(n["max_abs"] > 0 for n in quantized)
    line = (f"{len(nodes)}/{len(nodes)} node outputs match the NumPy reference; {len(quantized)} quantized within "
            f"{QUANT_STEPS} step ({one_step} with a 1-step difference)")
    worst = max(floats, key=lambda n: n["max_abs"], default=None)
    if worst:
        line += f"; worst float: {worst['op_type']} in {worst['module']} max |diff| {worst['max_abs']:.1e}"
    return line


def int8_test_set_lines(r: dict) -> list[str]:
    t = r["test_set"]
    what = "test set  " if r["checked_on_kind"] == "test set" else f"{r['checked_on_kind']:<10}"
    head = f"  {what}  {r['checked_on']}: "
    if "accuracy" in t:
        a = t["accuracy"]
        change = 100 * (a["int8"] - a["float"])
        head += (f"accuracy {100 * a['int8']:.2f}% (float {100 * a['float']:.2f}%: {change:+.2f} points, at most "
                 f"{100 * MAX_ACCURACY_DROP:.2f} lost); ")
    head += f"top-1 agreement with the float file {100 * t['top1_agreement_with_float']:.2f}%"
    fused = t["fused_vs_reference_steps"]
    return [head, f"              onnxruntime's fused int8 kernels vs the reference, tensor by tensor: {len(fused)} "
                  f"tensors within {max(fused.values()):g} quantization step (allowed {QUANT_STEPS})"]
