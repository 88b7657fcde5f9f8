"""PyTorch -> ONNX: any (N, C, H, W) -> (N, classes) nn.Module, with a dynamic batch axis;
the zoo's shipped models and weights trained by `python -m zoo train` with their metadata."""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from zoo.atomic import atomic_write_bytes
from zoo.datasets import get_dataset_info
from zoo.records import INPUT_SHAPE
from zoo.weights import load_pretrained, split_stem

from .metadata import INPUT_NAME, OUTPUT_NAME, build_metadata, set_metadata
from .options import DEFAULT_OPSET, check_opset


def export_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__}


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter narrates every step and warns about optional packages; keep it short."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def to_onnx(net: nn.Module, opset: int = DEFAULT_OPSET,
            input_shape: tuple[int, ...] = INPUT_SHAPE) -> onnx.ModelProto:
    """Export `net` (eval mode) for inputs (N, *input_shape) with a symbolic batch axis
    named 'batch' (by default the zoo's models' input, zoo.records.INPUT_SHAPE)."""
    check_opset(opset)
    example = torch.zeros(2, *input_shape)  # batch 2: a batch of 1 invites specialization
    with _quiet_exporter():
        program = torch.onnx.export(
            net.eval(), (example,), dynamo=True, verbose=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    proto = program.model_proto
    strip_stack_traces(proto)
    return proto


def strip_stack_traces(proto: onnx.ModelProto) -> None:
    """torch.onnx records each node's Python stack trace, paths of this machine included;
    a shipped file should not carry them (the module name scopes stay)."""
    for node in proto.graph.node:
        kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)


def export_model(model: str, dataset: str, opset: int = DEFAULT_OPSET) -> tuple[onnx.ModelProto, nn.Module, dict]:
    """The shipped (model, dataset) as an ONNX model with metadata, plus the torch module
    and model card it came from."""
    net, card = load_pretrained(model, dataset)
    return export_with_card(net, card, opset, source="shipped"), net, card


def export_with_card(net: nn.Module, card: dict, opset: int, source: str) -> onnx.ModelProto:
    """`net` as ONNX with the metadata of its zoo model card (shipped, or written by
    `python -m zoo train`: `source` says which); its input, labels and normalization are
    those of the card's dataset (zoo/datasets.py), which the card restates."""
    info = get_dataset_info(card["dataset"])
    proto = to_onnx(net, opset, info.image_shape)
    proto.model_version = 1
    who = "cnn-zoo" if source == "shipped" else "the user with python -m zoo train"
    proto.doc_string = (f"{card['model']} trained on {card['dataset']} by {who}; input {INPUT_NAME} "
                        f"(N, {', '.join(map(str, info.image_shape))}) float32 normalized, output {OUTPUT_NAME} "
                        f"(N, {info.num_classes})")
    set_metadata(proto, build_metadata(card, info, export_versions(), source))
    return proto


def write_unchecked(name: str, directory: Path) -> Path:
    """Export the shipped model `name` (e.g. lenet5-mnist) to directory/name.onnx without
    the checks: for tests and benchmarks that need a servable file quickly."""
    proto, _, _ = export_model(*split_stem(name))
    path = Path(directory) / f"{name}.onnx"
    atomic_write_bytes(path, proto.SerializeToString())
    return path
