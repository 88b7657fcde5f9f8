"""The short report `python -m export` prints for each export (the full one is JSON)."""

from __future__ import annotations

from .pipeline import ExportResult, worst_node

SOURCES = {"shipped": "shipped weights", "trained": "your weights", "custom": "your model"}


def format_result(result: ExportResult) -> str:
    r = result.report
    lines = [f"{result.name}  (opset {r['opset']}; {SOURCES[r['source']]}"
             + (f" {r['weights_file']}" if r.get("weights_file") else "") + ")"]
    if "structure" in r:
        s = r["structure"]
        lines.append(f"  structure   onnx.checker full_check and strict shape inference pass; "
                     f"{s['nodes']} nodes; output {s['inferred_output_shape']}")
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


def test_set_lines(r: dict) -> list[str]:
    t = r["test_set"]
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in t["max_abs_logit_diff"].items())
    what = "test set  " if r["checked_on_kind"] == "test set" else f"{r['checked_on_kind']:<10}"
    lines = [f"  {what}  {r['checked_on']}: top-1 agreement 100% for all pairs; max |logit diff| {diffs}"]
    if "accuracy" in t:
        card = f" (model card: {100 * r['card_accuracy']:.2f}%)" if r.get("card_accuracy") is not None else ""
        lines.append(f"              accuracy {100 * t['accuracy']['onnxruntime']:.2f}%{card}")
    return lines
