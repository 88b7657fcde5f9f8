"""Warm-up: a model version is ready only after it has run, so the first requests a client
sends after readiness do not pay onnxruntime's first-run costs (arena growth, kernel
selection, the single-threaded session's start).

By default: a few runs on zeros at batch 1 and at the largest batch the batcher forms (a
model of fixed batch at that batch). With Triton's `model_warmup` in config.pbtxt, its
samples instead: each input's `zero_data`, `random_data` or `input_data_file` (raw
row-major bytes in the model's `warmup/` folder, as Triton reads them), `batch_size`
copies, `count` runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .registry import ModelLoadError, ServedModel
from .signature import DTYPE_OF, DYNAMIC

DEFAULT_RUNS = 2  # per batch size
WARMUP_FOLDER = "warmup"  # Triton's: <model>/warmup/<input_data_file>


def _zeros_feed(model: ServedModel, batch: int) -> dict[str, np.ndarray]:
    """Zeros for every input: the batch axis `batch`, any other free axis 1."""
    signature = model.signature
    feed = {}
    for spec in signature.inputs:
        shape = [d if d != DYNAMIC else 1 for d in spec.shape]
        if signature.batched:
            shape[0] = batch
        feed[spec.name] = np.zeros(shape, spec.dtype)
    return feed


def default_samples(model: ServedModel, max_batch: int) -> list[tuple[str, dict[str, np.ndarray], int]]:
    """(what, feed, runs): batch 1 and the largest batch, zeros; a fixed batch as declared."""
    batches = sorted({1, max_batch}) if model.signature.batched else [0]
    return [(f"zeros at batch {b}" if b else "zeros", _zeros_feed(model, b), DEFAULT_RUNS) for b in batches]


def _sample_input(model: ServedModel, name: str, spec, batch: int, folder: Path) -> np.ndarray:
    from ..gen import model_config_pb2 as mc

    datatype = mc.DataType.Name(spec.data_type).removeprefix("TYPE_")
    if datatype not in DTYPE_OF:
        raise ModelLoadError(f"{model.path}: model_warmup input {name!r} has data_type {datatype}, which this server "
                             "cannot carry")
    dtype, dims = DTYPE_OF[datatype], [int(d) for d in spec.dims]
    kind = spec.WhichOneof("input_data_type")
    if kind == "random_data":
        one = np.random.default_rng(0).standard_normal(dims).astype(dtype)
    elif kind == "input_data_file":
        path = folder / WARMUP_FOLDER / spec.input_data_file
        if path.parent != folder / WARMUP_FOLDER or not path.is_file():
            raise ModelLoadError(f"{model.path}: model_warmup input {name!r}: no file {path}")
        data = path.read_bytes()
        if len(data) != int(np.prod(dims)) * dtype.itemsize:
            raise ModelLoadError(f"{model.path}: model_warmup input {name!r}: {path} has {len(data)} bytes, "
                                 f"dims {dims} of {datatype} need {int(np.prod(dims)) * dtype.itemsize}")
        one = np.frombuffer(data, dtype).reshape(dims)
    else:  # zero_data, or nothing said
        one = np.zeros(dims, dtype)
    return np.repeat(one[None], batch, axis=0) if model.signature.batched else one


def config_samples(model: ServedModel) -> list[tuple[str, dict[str, np.ndarray], int]]:
    """Triton's model_warmup samples of the model's config.pbtxt."""
    folder = model.path.parent.parent  # <model>/<version>/model.onnx
    samples = []
    for warmup in model.config.model_warmup:
        batch = max(int(warmup.batch_size), 1)
        feed = {name: _sample_input(model, name, spec, batch, folder) for name, spec in warmup.inputs.items()}
        samples.append((f"model_warmup {warmup.name!r}", feed, max(int(warmup.count), 1)))
    return samples


def warm_up(model: ServedModel, max_batch: int) -> str:
    """Run the model's warm-up samples; returns what ran and how long it took, for the log.
    ModelLoadError naming the file when a sample does not fit the model (a warm-up that
    fails is a model that would fail its first request)."""
    config = model.config
    samples = config_samples(model) if config is not None and len(config.model_warmup) else \
        default_samples(model, max_batch)
    start = time.perf_counter()
    for what, feed, runs in samples:
        for _ in range(runs):
            try:
                model.run_feed(feed)
            except Exception as e:  # onnxruntime's refusal of the sample
                text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelLoadError(f"{model.path}: warm-up ({what}) failed: {text}") from None
    seconds = time.perf_counter() - start
    return f"warmed up in {seconds * 1000:.0f} ms ({'; '.join(f'{what} x{runs}' for what, _, runs in samples)})"
