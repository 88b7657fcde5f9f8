"""int8 files beside the float ones: models/<name>-int8.onnx, by static quantization with
onnxruntime's quantization tools, calibrated on real training images, checked like the
float file (export/int8_checks.py) and written only when every check passes.

The scheme (SCHEME) is the one that computes what the ONNX spec says on every CPU:

- QDQ format: QuantizeLinear / DequantizeLinear pairs around the float operators, which
  onnxruntime fuses into integer kernels (QLinearConv, QGemm, ...) and any other runtime
  can read as plain ONNX; opset 19 at least, as onnx's ReferenceEvaluator runs
  DequantizeLinear only from opset 19;
- activations uint8, asymmetric, one scale per tensor, from the MinMax of the calibration
  images; the float file's ReLUs become the zero point of the tensor after them;
- weights int8, symmetric, one scale per output channel, within [-64, 64] (onnxruntime's
  reduce_range, "7-bit" weights). x86 CPUs without VNNI (AVX2 only) multiply uint8 by
  int8 with vpmaddubsw, which adds each pair of products in 16 bits and saturates: with
  full-range weights 255 * 127 * 2 = 64,770 > 32,767, and onnxruntime's answers leave the
  spec by tens of quantization steps (int8 activations do no better: onnxruntime runs
  them as uint8 on x86). Within +-64, 255 * 64 * 2 = 32,640 never saturates, on any CPU
  (README, int8); the activations keep all 8 bits;
- biases int32, with scale input scale x weight scale and zero point 0.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import version_converter

from zoo.atomic import atomic_write_bytes
from zoo.data import load, normalize

from .metadata import read_metadata, set_metadata
from .options import DEFAULT_CALIBRATION_IMAGES, INT8_MIN_OPSET

CALIBRATION_SEED = 0
CALIBRATION_BATCH = 100
SUFFIX = "-int8"

SCHEME = {
    "format": "QDQ (QuantizeLinear / DequantizeLinear around float operators)",
    "activations": "uint8, asymmetric, per tensor",
    "weights": "int8, symmetric, per output channel, within [-64, 64] (reduce_range)",
    "bias": "int32, scale = input scale x weight scale, zero point 0",
    "calibration_method": "MinMax",
}

# metadata an int8 file adds to the float file's (export/metadata.py, KEYS); the README
# documents the same table
INT8_KEYS = {
    "quantization": "JSON of the scheme: format, activation and weight types and granularity, calibration "
                    "method, and the onnxruntime that quantized it",
    "calibration": "what the scales were calibrated on, e.g. 1,000 mnist training images (a seeded random "
                   "sample, seed 0)",
    "calibration_images": "how many images that was",
    "float_model": "the float file this one quantizes, e.g. lenet5-mnist.onnx",
    "float_sha256": "SHA-256 of the float file's bytes",
    "checked_on": "the images the accuracy and agreement below were measured on",
    "float_accuracy": "top-1 accuracy of the float file on those images (when they have labels)",
    "accuracy_change": "this file's accuracy minus the float file's, e.g. -0.0002 (when labelled)",
    "float_top1_agreement": "fraction of those images on which this file and the float file agree on the top-1 class",
}


@dataclass(frozen=True)
class Int8Options:
    """What `--int8` takes: how many calibration images, drawn with which seed."""
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    seed: int = CALIBRATION_SEED

    def __post_init__(self) -> None:
        if self.calibration_images < 1:
            raise ValueError(f"calibration images {self.calibration_images}: give at least 1")


@dataclass(frozen=True)
class CalibrationSet:
    images: np.ndarray  # normalized float32 (N, C, H, W), as the model reads them
    description: str


def int8_name(name: str) -> str:
    return f"{name}{SUFFIX}"


def int8_opset(opset: int) -> int:
    return max(opset, INT8_MIN_OPSET)


def seeded_sample(count: int, available: int, seed: int) -> np.ndarray:
    """`count` distinct indices of `available`, drawn with `seed`, in draw order."""
    if count > available:
        raise ValueError(f"{count:,} calibration images asked for, but only {available:,} are available")
    return np.random.default_rng(seed).permutation(available)[:count]


def training_calibration(dataset: str, options: Int8Options, data_dir=None) -> CalibrationSet:
    """A seeded random sample of the dataset's training images (never the test images the
    checks run on), normalized as the model reads them."""
    split = load(dataset, "train", data_dir=data_dir, progress=False)
    picked = seeded_sample(options.calibration_images, len(split.images), options.seed)
    return CalibrationSet(normalize(split.images[picked], split.info),
                          f"{len(picked):,} {dataset} training images (a seeded random sample, seed {options.seed})")


def sample_calibration(images: np.ndarray, description: str, options: Int8Options) -> CalibrationSet:
    """Up to `calibration_images` of a custom model's images, a seeded sample when there
    are more."""
    count = min(options.calibration_images, len(images))
    picked = seeded_sample(count, len(images), options.seed)
    return CalibrationSet(images[picked], f"{count:,} of {description}" if count < len(images) else description)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: feeds, batch by batch, then None."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.batches = iter([{input_name: images[i : i + CALIBRATION_BATCH]}
                             for i in range(0, len(images), CALIBRATION_BATCH)])

    def get_next(self):
        return next(self.batches, None)


@contextlib.contextmanager
def quiet_quantizer():
    """The quantizer logs advice at WARNING on the root logger (pre-processing, which the
    exporter's own constant folding already did); keep the command's output short."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(float_proto: onnx.ModelProto, calibration: CalibrationSet, opset: int, *,
             activation_type: str = "QUInt8", reduce_range: bool = True, extra_options: dict | None = None
             ) -> onnx.ModelProto:
    """The float model as static QDQ int8 at `opset` (at least INT8_MIN_OPSET), its nodes
    keeping the float nodes' names and metadata (the PyTorch module of each). The defaults
    are SCHEME; bench/int8_schemes.py passes the others onnxruntime offers, to compare."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    converted = copy.deepcopy(float_proto)
    if converted.opset_import[0].version != opset:
        converted = version_converter.convert_version(converted, opset)
    input_name = converted.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="cnn-zoo-int8-") as folder, quiet_quantizer():
        path = Path(folder) / "int8.onnx"
        quantize_static(converted, path, _Reader(input_name, calibration.images), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=reduce_range, activation_type=QuantType[activation_type],
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        extra_options=extra_options or {})
        proto = onnx.load(path)
    scopes = {node.name: list(node.metadata_props) for node in float_proto.graph.node}
    for node in proto.graph.node:
        if node.name in scopes and not node.metadata_props:
            node.metadata_props.extend(scopes[node.name])
    return proto


def scheme_json() -> str:
    return json.dumps({**SCHEME, "quantizer": f"onnxruntime.quantization.quantize_static "
                                             f"{onnxruntime.__version__}"}, sort_keys=True)


def set_int8_metadata(proto: onnx.ModelProto, float_proto: onnx.ModelProto, float_file: str,
                      calibration: CalibrationSet, test_set: dict | None, checked_on: str) -> None:
    """The float file's metadata, plus INT8_KEYS; test_accuracy (when the float file has
    one) becomes this file's own, measured on the same images."""
    meta = read_metadata(float_proto)
    meta.update({"quantization": scheme_json(), "calibration": calibration.description,
                 "calibration_images": str(len(calibration.images)), "float_model": float_file,
                 "float_sha256": hashlib.sha256(float_proto.SerializeToString()).hexdigest(),
                 "checked_on": checked_on})
    if test_set is not None:
        meta["float_top1_agreement"] = repr(test_set["top1_agreement_with_float"])
        if "accuracy" in test_set:
            accuracy = test_set["accuracy"]
            meta.update({"float_accuracy": repr(accuracy["float"]),
                         "accuracy_change": repr(round(accuracy["int8"] - accuracy["float"], 6))})
            if "test_accuracy" in meta:
                meta["test_accuracy"] = repr(accuracy["int8"])
    set_metadata(proto, meta)
    proto.doc_string = (f"{float_proto.doc_string}; int8: static QDQ quantization ({SCHEME['activations']} "
                        f"activations, {SCHEME['weights']} weights), calibrated on {calibration.description}")


def write_unchecked_int8(float_path: Path, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                         data_dir=None) -> Path:
    """A zoo model's float file (e.g. models/lenet5-mnist.onnx, from export.exporter.
    write_unchecked) quantized as --int8 does, calibrated on its dataset's training images,
    written beside it as lenet5-mnist-int8.onnx without the checks: for tests and
    benchmarks that need a servable int8 file quickly (python -m export --int8 writes the
    checked one)."""
    float_path = Path(float_path)
    float_proto = onnx.load(float_path)
    dataset = read_metadata(float_proto)["dataset"]
    calibration = training_calibration(dataset, Int8Options(calibration_images), data_dir)
    proto = quantize(float_proto, calibration, int8_opset(float_proto.opset_import[0].version))
    set_int8_metadata(proto, float_proto, float_path.name, calibration, None, "nothing: written unchecked")
    path = float_path.with_name(f"{int8_name(float_path.stem)}.onnx")
    atomic_write_bytes(path, proto.SerializeToString())
    return path
