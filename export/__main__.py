"""python -m export <model> [--dataset D] [--weights FILE --name NAME] [--opset N] [--out DIR] [--int8] | --all
python -m export custom PKG.MODULE:CLASS --weights FILE --input-shape C,H,W [...]
python -m export verify MODEL.onnx [--strict] [--json FILE]

Export the zoo's models (shipped weights, or weights you trained with python -m zoo train)
or a CNN you wrote to ONNX, check each node against the NumPy reference and the test set
(or your samples) against PyTorch, and write the files only when everything agrees (with
--int8 also an int8 file beside each, checked the same way); or verify any ONNX file you
have.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only light imports up here: a typo must be refused before torch and onnx are loaded.
from zoo.cli import CliError, exit_process, run_command, version_text
from zoo.datasets import list_datasets
from zoo.normalization import parse_normalization
from zoo.weights import shipped

from .options import (DEFAULT_CALIBRATION_IMAGES, DEFAULT_OPSET, DEFAULT_TRITON_REPO, MAX_OPSET, MIN_OPSET,
                      MissingExtra, check_int8_args, check_opset, check_output_folder, require)

def shipped_models() -> list[str]:
    return sorted({model for model, _ in shipped()})


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default: {DEFAULT_OPSET})")
    parser.add_argument("--out", default="models", help="output directory (default: models)")
    parser.add_argument("--triton-repo", nargs="?", const=DEFAULT_TRITON_REPO,
                        help="also write a Triton/KServe model repository here (default: none; "
                             f"the flag alone: {DEFAULT_TRITON_REPO})")
    parser.add_argument("--triton-device", choices=["cpu", "gpu"], default="cpu",
                        help="instance group kind in config.pbtxt (default: cpu)")
    parser.add_argument("--int8", action="store_true",
                        help="also write <name>-int8.onnx: static QDQ int8 (uint8 activations, int8 per-channel "
                             "weights), checked like the float file (default: off)")
    parser.add_argument("--calibration-images", type=int, metavar="N",
                        help=f"with --int8, calibrate on N images (default: {DEFAULT_CALIBRATION_IMAGES}; "
                             "zoo models: a seeded sample of the training images)")


def zoo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_text("python -m export"))
    parser.add_argument("model", nargs="?", help=f"one of: {', '.join(shipped_models())}")
    parser.add_argument("--all", action="store_true", help="every shipped model and dataset (default: off)")
    parser.add_argument("--dataset", help="mnist or fashion-mnist (default: mnist; with --weights, the card's)")
    parser.add_argument("--weights", help="a .safetensors written by python -m zoo train, its model card "
                                          "beside it (default: the shipped weights)")
    parser.add_argument("--name", help="output name, with --weights (default: the weights file's name, "
                                       "unless that is a shipped model's)")
    parser.add_argument("--data-dir", help="dataset directory (default: $ZOO_DATA_DIR, else the cache)")
    add_output_args(parser)
    return parser


def custom_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export custom",
                                     description="Export a CNN you wrote: any (N, C, H, W) -> (N, classes) "
                                                 "nn.Module, with its safetensors weights.")
    parser.add_argument("module", help="import path and class (or function) that builds it, e.g. "
                                       "mypkg.models:MyNet (the current directory is importable)")
    parser.add_argument("--weights", help="a .safetensors state dict for it (default: none, the module's "
                                          "own initial weights)")
    parser.add_argument("--input-shape", required=True, help="C,H,W of one input, e.g. 3,32,32")
    parser.add_argument("--labels", help="class names, comma-separated (default: 0, 1, ...)")
    parser.add_argument("--mean", default="0", help="per-channel mean after pixel scaling, comma-separated "
                                                    "(default: 0)")
    parser.add_argument("--std", default="1", help="per-channel std, comma-separated (default: 1)")
    parser.add_argument("--pixel-scale", type=float, default=1 / 255,
                        help="raw pixels are multiplied by this first (default: 1/255)")
    parser.add_argument("--samples", help="a folder of images (in class-named subfolders for an accuracy) or "
                                          "an .npy array to run the checks on (default: seeded random inputs)")
    parser.add_argument("--name", help="output name (default: the class name, lower case)")
    parser.add_argument("--calibration", help="with --int8, a folder of images or an .npy array to calibrate on "
                                              "(default: the --samples)")
    add_output_args(parser)
    return parser


def verify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export verify",
                                     description="Check any ONNX file: structure, every node against the "
                                                 "NumPy reference, every test_data_set_* beside it.")
    parser.add_argument("files", nargs="+", help="ONNX files, or folders: every .onnx file in them (a Triton "
                                                 "repository's too)")
    parser.add_argument("--strict", action="store_true",
                        help="an operator the reference lacks is a failure (default: reported as unchecked)")
    parser.add_argument("--json", help="also write the full report as JSON to this file (default: none)")
    return parser


def parse_list(text: str, kind: str, convert=str) -> list:
    try:
        values = [convert(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CliError(f"{kind} {text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise CliError(f"{kind} is empty")
    return values


def validate_zoo(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(model, dataset) pairs to export from shipped weights, or [] for --weights."""
    check_opset(args.opset)
    if args.weights:
        if args.all:
            raise CliError("give --weights or --all, not both")
        if not args.weights.endswith(".safetensors"):
            raise CliError(f"--weights {args.weights}: expected a .safetensors file written by python -m zoo train")
    elif args.name:
        raise CliError("--name goes with --weights (shipped models keep their names)")
    if args.all:
        if args.model:
            raise CliError("give a model name or --all, not both")
        return shipped()
    if args.model and args.model not in shipped_models():
        raise CliError(f"unknown model {args.model!r}; valid models: {', '.join(shipped_models())}")
    if args.dataset and args.dataset not in list_datasets():
        raise CliError(f"unknown dataset {args.dataset!r}; valid datasets: {', '.join(list_datasets())}")
    if args.weights:
        return []
    if not args.model:
        raise CliError(f"name a model ({', '.join(shipped_models())}) or use --all")
    return [(args.model, args.dataset or "mnist")]


def run_zoo(args: argparse.Namespace) -> int:
    pairs = validate_zoo(args)
    calibration_images = check_int8_args(args.int8, args.calibration_images)
    check_output_folder(args.out, "--out")
    check_output_folder(args.triton_repo, "--triton-repo")
    require("export")
    from .int8 import Int8Options
    from .pipeline import export_and_check, export_trained
    from .report import format_result

    common = dict(opset=args.opset, data_dir=args.data_dir, triton_device=args.triton_device,
                  triton_repo=Path(args.triton_repo) if args.triton_repo else None,
                  int8=Int8Options(calibration_images) if args.int8 else None)
    if args.weights:
        jobs = [lambda: export_trained(Path(args.weights), Path(args.out), name=args.name, model=args.model,
                                       dataset=args.dataset, **common)]
    else:
        jobs = [lambda m=m, d=d: export_and_check(m, d, Path(args.out), **common) for m, d in pairs]
    return report_exports(jobs, format_result)


def report_exports(jobs, format_result) -> int:
    failures = exports = 0
    for job in jobs:
        for result in job().results():  # the float file, and its int8 file with --int8
            print(format_result(result), flush=True)
            failures += not result.passed
            exports += 1
    if failures:
        print(f"{failures} of {exports} exports FAILED their checks", file=sys.stderr)
        return 1
    print("the export passed every check" if exports == 1 else f"all {exports} exports passed every check")
    return 0


def run_custom(args: argparse.Namespace) -> int:
    check_opset(args.opset)
    shape = tuple(parse_list(args.input_shape, "--input-shape", int))
    if len(shape) != 3 or min(shape) < 1:
        raise CliError(f"--input-shape {args.input_shape}: expected C,H,W, three positive integers")
    norm = parse_normalization(args.mean, args.std, args.pixel_scale, channels=shape[0],
                               keys=("--mean", "--std", "--pixel-scale"))
    labels = parse_list(args.labels, "--labels") if args.labels else None
    calibration_images = check_int8_args(args.int8, args.calibration_images, args.calibration)
    if ":" not in args.module:
        raise CliError(f"{args.module!r}: expected PKG.MODULE:CLASS, for example mypkg.models:MyNet")
    check_output_folder(args.out, "--out")
    check_output_folder(args.triton_repo, "--triton-repo")
    require("export")
    from .custom import export_checked, load_module
    from .report import format_result

    module, name = load_module(args.module, args.weights)
    out = Path(args.out) / f"{args.name or name}.onnx"
    return report_exports([lambda: export_checked(
        module, out, input_shape=shape, labels=labels, mean=norm.mean, std=norm.std, pixel_scale=norm.pixel_scale,
        samples=args.samples, opset=args.opset, weights=args.weights,
        triton_repo=Path(args.triton_repo) if args.triton_repo else None, triton_device=args.triton_device,
        int8=args.int8, calibration=args.calibration, calibration_images=calibration_images)],
        format_result)


def onnx_files(paths: list[str]) -> list[Path]:
    """The files to verify: each file named, and every .onnx below each folder named (a
    models/ folder, a Triton repository's <name>/<version>/model.onnx), in order."""
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.rglob("*.onnx"))
            if not found:
                raise CliError(f"{path} is a folder with no .onnx file in it; name ONNX files, or a folder holding them")
            files += found
        else:
            files.append(path)
    return files


def run_verify(args: argparse.Namespace) -> int:
    require("verify")
    import json

    from zoo.atomic import atomic_write_text

    from .verify import format_verify, verify

    results = [verify(path, strict=args.strict) for path in onnx_files(args.files)]
    for result in results:
        print(format_verify(result), flush=True)
    if args.json:
        atomic_write_text(Path(args.json), json.dumps([r.to_json() for r in results], indent=2) + "\n")
    failed = [r.path for r in results if not r.passed]
    if failed:
        print(f"{len(failed)} of {len(results)} files FAILED verification: {', '.join(failed)}", file=sys.stderr)
        return 1
    if len(results) > 1:
        print(f"all {len(results)} files passed verification")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {"verify": (verify_parser, run_verify), "custom": (custom_parser, run_custom)}
    if argv and argv[0] in commands:
        parser, run = commands[argv.pop(0)]
    else:
        parser, run = zoo_parser, run_zoo
    args = parser().parse_args(argv)
    try:
        return run_command(lambda: run(args))
    except MissingExtra as e:  # not a mistake in the arguments: exit 1, as python -m zoo does
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    exit_process(main())
