"""What the export command lines accept, importable without torch or onnx, so a typo is
refused at once (a full import of torch takes seconds)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from zoo.cli import CliError

DEFAULT_OPSET = 18
MIN_OPSET = 17  # older opsets go through a converter we do not test
MAX_OPSET = 28  # the newest opset of the onnx we pin (a test keeps the two in step)
INT8_MIN_OPSET = 19  # int8 files: onnx's ReferenceEvaluator runs DequantizeLinear only from opset 19
DEFAULT_CALIBRATION_IMAGES = 1000  # --int8: training images the activation ranges are calibrated on
DEFAULT_TRITON_REPO = "model_repository"  # Triton's own name; `triton` would shadow a package
EXPORT_EXTRA = 'pip install -c constraints.txt ".[export]"'
# What each command imports that the base install lacks (the export extra has them all).
NEEDS = {"export": ("torch", "safetensors", "tqdm", "platformdirs", "onnx", "onnxruntime", "onnxscript"),
         "verify": ("onnx", "onnxruntime")}
PROBED = {"triton"}  # optional packages torch looks for: an empty folder of that name fakes them


def supported_opsets() -> range:
    return range(MIN_OPSET, MAX_OPSET + 1)


def check_opset(opset: int) -> int:
    if opset not in supported_opsets():
        raise ValueError(f"opset {opset} is not supported; use {MIN_OPSET} to {MAX_OPSET}")
    return opset


def check_output_folder(folder: str | None, flag: str) -> None:
    """Refuse an output folder that would shadow an importable package: `triton/` in the
    current directory made torch import it instead of the real one (or of none)."""
    if folder is None:
        return
    path = Path(folder).resolve()
    on_path = {Path.cwd().resolve()} | {Path(p).resolve() for p in sys.path if p}
    if path.parent not in on_path or not path.name.isidentifier():
        return
    if path.name in PROBED or shadows(path):
        raise CliError(f"{flag} {folder}: a folder named {path.name!r} here would shadow the Python package "
                       f"{path.name!r}; choose another name (for example {DEFAULT_TRITON_REPO})")


def shadows(path: Path) -> bool:
    """Whether a module or regular package of that name exists: our folder, a namespace
    package, would then stand in front of it (or it in front of our folder)."""
    spec = importlib.util.find_spec(path.name)
    return spec is not None and spec.origin not in (None, "namespace")


def check_int8_args(int8: bool, calibration_images: int | None, calibration: str | None = None) -> int:
    """The calibration count for --int8 (its default when not given); either flag without
    --int8 is a mistake, as is a count below 1."""
    for flag, value in (("--calibration-images", calibration_images), ("--calibration", calibration)):
        if value is not None and not int8:
            raise CliError(f"{flag} goes with --int8")
    if calibration_images is not None and calibration_images < 1:
        raise CliError(f"--calibration-images {calibration_images}: give at least 1")
    return DEFAULT_CALIBRATION_IMAGES if calibration_images is None else calibration_images


class MissingExtra(Exception):
    """Packages of the export extra are not installed (the lean serve install)."""


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a module set to None
        return False


def require(command: str) -> None:
    """One line naming the extra to install, instead of a ModuleNotFoundError traceback."""
    missing = [m for m in NEEDS[command] if not installed(m)]
    if missing:
        raise MissingExtra(f"python -m export {'verify ' if command == 'verify' else ''}needs {', '.join(missing)}, "
                           f"which this environment lacks; install the export extra: {EXPORT_EXTRA}")
