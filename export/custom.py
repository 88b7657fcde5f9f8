"""Any CNN you wrote through the same checks as the zoo's: export_checked(module, path, ...)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch
from torch import nn

from zoo.normalization import DEFAULT_PIXEL_SCALE, parse_normalization
from zoo.weights import load_weights_into, sha256sum

from .exporter import export_versions, to_onnx
from .int8 import DEFAULT_CALIBRATION_IMAGES, Int8Options, sample_calibration
from .metadata import build_custom_metadata, set_metadata
from .options import DEFAULT_OPSET
from .pipeline import ExportResult, WriteOptions, check_and_write
from .samples import check_inputs


def num_outputs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The module's class count, from one forward pass of zeros; a module that cannot take
    the input shape is a ValueError in one line (torch's own message runs to 60 lines)."""
    shape = f"(2, {', '.join(map(str, input_shape))})"
    try:
        with torch.inference_mode():
            out = module.eval()(torch.zeros(2, *input_shape))
    except Exception as e:  # RuntimeError from a layer of the wrong size, and whatever the user's code raises
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"the module cannot take inputs of shape {shape} ({type(e).__name__}: {reason}); "
                         "check --input-shape (C,H,W of one input)") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the module maps {shape} to {got}; expected one (N, classes) tensor of logits")
    return int(out.shape[1])


def export_checked(
    module: nn.Module, out_path: str | Path, *, input_shape: tuple[int, ...], labels: list[str] | None = None,
    mean=0.0, std=1.0, pixel_scale: float = DEFAULT_PIXEL_SCALE, samples=None, opset: int = DEFAULT_OPSET,
    weights: str | Path | None = None, triton_repo: Path | None = None, triton_device: str = "cpu",
    int8: bool = False, calibration=None, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
) -> ExportResult:
    """Export `module` ((N, *input_shape) float32 -> (N, classes) logits) to `out_path`
    (models/name.onnx) after the four checks, run on `samples` (a folder of images, an .npy
    file or an array; seeded random inputs when None). `mean` and `std` are per channel (or
    one for all) and travel in the file's metadata with `labels` and `pixel_scale`;
    `weights` names the safetensors file the module was loaded from, for its SHA-256.
    With `int8`, also models/name-int8.onnx (result.int8), calibrated on up to
    `calibration_images` of `calibration` (the same kinds as `samples`; default: the
    samples themselves) and checked on the samples.
    Returns the result; the files are written only if it passed."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape {list(input_shape)}: expected (C, H, W)")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"{out_path}: the output path must end in .onnx")
    norm = parse_normalization(mean, std, pixel_scale, channels=input_shape[0])
    classes = num_outputs(module, input_shape)
    labels = [str(i) for i in range(classes)] if labels is None else [str(label) for label in labels]
    if len(labels) != classes:
        raise ValueError(f"{len(labels)} labels for a module with {classes} outputs")
    inputs = check_inputs(samples, input_shape, labels, norm)
    int8_options = Int8Options(calibration_images) if int8 else None
    calibration_inputs = inputs if calibration is None or not int8 else check_inputs(
        calibration, input_shape, labels, norm)
    proto = to_onnx(module, opset, input_shape)
    proto.model_version = 1
    proto.doc_string = (f"{out_path.stem}: a custom model exported by cnn-zoo; input (N, "
                        f"{', '.join(map(str, input_shape))}) float32 normalized, output (N, {classes}) logits")
    sha = sha256sum(weights) if weights else None
    set_metadata(proto, build_custom_metadata(
        out_path.stem, labels, input_shape, norm,
        sum(p.numel() for p in module.parameters()), export_versions(), sha))
    report = {"source": "custom", "model": type(module).__name__, "opset": opset, "input_shape": list(input_shape),
              "classes": classes, "weights_file": str(weights) if weights else None, "weights_sha256": sha}
    options = WriteOptions(out_path.parent, triton_repo, triton_device)
    result = check_and_write(out_path.stem, proto, module, inputs, report, options,
                             num_classes=classes, card_accuracy=None)
    if int8_options is not None:
        from .int8_export import export_int8

        result.int8 = export_int8(result, proto, inputs, lambda: sample_calibration(
            calibration_inputs.images, calibration_inputs.description, int8_options), options,
            num_classes=classes, opset=opset)
    return result


def load_module(spec: str, weights: str | None) -> tuple[nn.Module, str]:
    """'pkg.module:Class' (the current directory importable, as for python -m) built with no
    arguments, its weights loaded from a safetensors file; and a default output name."""
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    if not attr:
        raise ValueError(f"{spec}: no class named; expected module.path:ClassName")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as e:
        raise ValueError(f"{spec}: cannot import {e.name!r}") from None
    except AttributeError:
        raise ValueError(f"{spec}: module {module_name!r} has no {attr!r}") from None
    except Exception as e:  # the user's module itself fails to import (SyntaxError, ImportError, ...)
        raise ValueError(f"{spec}: importing {module_name!r} failed ({type(e).__name__}: {e})") from None
    try:
        net = builder()
    except Exception as e:  # e.g. a class that needs constructor arguments
        raise ValueError(f"{spec}() failed ({type(e).__name__}: {e}); expected a class built "
                         "without arguments") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"{spec}() returned a {type(net).__name__}, not an nn.Module")
    if weights:
        load_weights_into(net, weights, spec)
    return net.eval(), attr.lower()
