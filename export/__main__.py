"""python -m export <model> [--dataset D] [--opset N] [--out DIR] | --all

Export shipped zoo models to ONNX, check each node against the NumPy reference and the
whole test set against PyTorch, and write the files only when everything agrees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo import list_models
from zoo.datasets import list_datasets
from zoo.cli import run_command
from zoo.weights import shipped

from .exporter import DEFAULT_OPSET, supported_opsets
from .pipeline import ExportResult, export_and_check, worst_node


def format_result(result: ExportResult) -> str:
    r = result.report
    lines = [f"{result.name}  (opset {r['opset']})"]
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
        t = r["test_set"]
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in t["max_abs_logit_diff"].items())
        lines.append(f"  test set    {t['images']:,} images: top-1 agreement 100% for all pairs; "
                     f"max |logit diff| {diffs}")
        lines.append(f"              accuracy {100 * t['accuracy']['onnxruntime']:.2f}% "
                     f"(model card: {100 * r['card_accuracy']:.2f}%)")
    if result.passed:
        lines.append(f"  size        {r['onnx_bytes'] / 1024:,.1f} KiB")
    else:
        lines.append(f"  FAILED      {result.failure}")
    lines.append("  wrote       " + ", ".join(str(p) for p in result.written))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--all", action="store_true", help="every shipped model and dataset (default: off)")
    parser.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist (default: mnist)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {supported_opsets()[0]} to {supported_opsets()[-1]} "
                             f"(default: {DEFAULT_OPSET})")
    parser.add_argument("--out", default="models", help="output directory (default: models)")
    parser.add_argument("--data-dir", help="dataset directory (default: $ZOO_DATA_DIR, else the cache)")
    parser.add_argument("--triton-repo", help="also write a Triton/KServe model repository here (default: none)")
    parser.add_argument("--triton-device", choices=["cpu", "gpu"], default="cpu",
                        help="instance group kind in config.pbtxt (default: cpu)")
    return parser


def pairs_from_args(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.all:
        if args.model:
            raise ValueError("give a model name or --all, not both")
        return shipped()
    if not args.model:
        raise ValueError(f"name a model ({', '.join(list_models())}) or use --all")
    if args.model not in list_models():
        raise ValueError(f"unknown model {args.model!r}; valid models: {', '.join(list_models())}")
    if args.dataset not in list_datasets():
        raise ValueError(f"unknown dataset {args.dataset!r}; valid datasets: {', '.join(list_datasets())}")
    if args.opset not in supported_opsets():
        raise ValueError(f"opset {args.opset} is not supported; use {supported_opsets()[0]} to "
                         f"{supported_opsets()[-1]}")
    return [(args.model, args.dataset)]


def export_all(args: argparse.Namespace) -> int:
    pairs = pairs_from_args(args)
    failures = 0
    for model, dataset in pairs:
        result = export_and_check(
            model, dataset, Path(args.out), opset=args.opset, data_dir=args.data_dir,
            triton_repo=Path(args.triton_repo) if args.triton_repo else None,
            triton_device=args.triton_device)
        print(format_result(result), flush=True)
        failures += not result.passed
    if failures:
        print(f"{failures} of {len(pairs)} exports FAILED their checks", file=sys.stderr)
        return 1
    print(f"all {len(pairs)} exports passed every check")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: export_all(args))


if __name__ == "__main__":
    sys.exit(main())
