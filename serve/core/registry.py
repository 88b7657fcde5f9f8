"""The served models: every .onnx in the models directory, loaded with its metadata."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .device import CPU, DeviceError, first_line, make_session
from .errors import invalid, not_found, unavailable

log = logging.getLogger("serve")

# A model name is a file stem of the models directory: letters, digits, '.', '_' and '-',
# starting with a letter or digit, so a name can never be a path.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Runs of fewer images than this go to a single-threaded session: waking onnxruntime's other
# intra-op threads costs more than they save on so little work. So do all runs while the
# model is crowded (a run started beside another in the last CROWDED_MEMORY_S seconds),
# whatever their size: the cores are taken, and the extra threads would only wait for them
# (bench/serve_bench.py: less server CPU per request, more req/s). A large run on a quiet
# model uses every thread.
SINGLE_THREAD_BELOW = 16
CROWDED_MEMORY_S = 0.1
REQUIRED_METADATA = ("labels", "mean", "std", "pixel_scale", "input_name", "output_name", "input_shape")


class ModelLoadError(Exception):
    """A model file that cannot be served; the message names the file."""


@dataclass
class ServedModel:
    name: str
    path: Path
    version: str = ""
    ready: bool = False
    error: str = ""
    session: ort.InferenceSession | None = None
    small_session: ort.InferenceSession | None = None  # single-threaded, for small runs on the CPU
    provider: str = ""
    labels: list[str] = field(default_factory=list)
    mean: float = 0.0
    std: float = 1.0
    pixel_scale: float = 1 / 255
    input_name: str = "input"
    output_name: str = "logits"
    input_shape: list[int] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    running: int = 0  # onnxruntime runs in flight
    crowded_at: float = -1e9  # when a run last started beside another (time.monotonic())
    _running_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def run(self, x: np.ndarray) -> np.ndarray:
        now = time.monotonic()
        with self._running_lock:
            if self.running:
                self.crowded_at = now
            crowded = now - self.crowded_at < CROWDED_MEMORY_S
            self.running += 1
        try:
            small = self.small_session is not None and (crowded or len(x) < SINGLE_THREAD_BELOW)
            return (self.small_session if small else self.session).run([self.output_name], {self.input_name: x})[0]
        finally:
            with self._running_lock:
                self.running -= 1


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise invalid(
            f"model name {name[:80]!r} is not valid: expected 1-128 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def _parse_metadata(path: Path, meta: dict[str, str]) -> dict:
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ModelLoadError(f"{path}: metadata_props lack {', '.join(missing)} (export it with python -m export)")
    try:
        labels = json.loads(meta["labels"])
        input_shape = [int(d) for d in json.loads(meta["input_shape"])]
        values = {k: float(meta[k]) for k in ("mean", "std", "pixel_scale")}
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"{path}: unreadable metadata ({e})") from None
    if input_shape[1:] != [1, 28, 28] or not labels:
        raise ModelLoadError(f"{path}: input shape {input_shape} or labels {labels} not supported")
    return dict(labels=labels, input_shape=input_shape, input_name=meta["input_name"],
                output_name=meta["output_name"], metadata=meta, **values)


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Idle onnxruntime threads would otherwise spin, taking the cores that the gRPC
    # threads (and, on a small machine, the clients) need between runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load_model(path: Path, device: str, threads: int = 0) -> ServedModel:
    """Load one .onnx file; raises ModelLoadError (or DeviceError) naming the file.

    Everything comes from onnxruntime itself (the graph and its metadata_props), so the
    server needs no other ONNX library."""
    model = ServedModel(name=path.stem, path=path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        model.session = make_session(data, device, _session_options(threads), name=model.name)
    except DeviceError:
        raise  # the device, not this file, is at fault: never hidden as one broken model
    except Exception as e:  # truncated, corrupt or not a model at all
        raise ModelLoadError(f"{path}: cannot load as an ONNX model ({first_line(e)})") from None
    meta = model.session.get_modelmeta()
    for key, value in _parse_metadata(path, dict(meta.custom_metadata_map)).items():
        setattr(model, key, value)
    model.version = str(meta.version or 1)
    model.provider = model.session.get_providers()[0]
    if model.provider == CPU and threads != 1:
        model.small_session = make_session(data, "cpu", _session_options(1))
    model.ready = True
    return model


class ModelRegistry:
    def __init__(self, models: dict[str, ServedModel]) -> None:
        self.models = models

    @classmethod
    def load_dir(cls, directory: Path, device: str, *, strict: bool = False, threads: int = 0) -> "ModelRegistry":
        """Every *.onnx in `directory`. A broken file is kept as not ready with its error,
        unless `strict`, which raises instead. A DeviceError always raises."""
        paths = sorted(p for p in Path(directory).glob("*.onnx") if NAME_PATTERN.match(p.stem))
        if not paths:
            raise FileNotFoundError(
                f"no .onnx models in {directory}; run `python -m export --all --out {directory}` first"
            )
        models = {}
        for path in paths:
            try:
                models[path.stem] = load_model(path, device, threads)
            except ModelLoadError as e:
                if strict:
                    raise
                log.error("not serving %s: %s", path.stem, e)
                models[path.stem] = ServedModel(name=path.stem, path=path, error=str(e))
        return cls(models)

    def all_models(self) -> list[ServedModel]:
        """Every model it was asked to serve, ready or not."""
        return [self.models[name] for name in self.names()]

    def names(self) -> list[str]:
        return sorted(self.models)

    def lookup(self, name: str, version: str = "") -> ServedModel:
        """The model `name` (at `version`, if given), ready or not; NOT_FOUND otherwise (or
        INVALID_ARGUMENT for a name that could never be served). Every request comes through
        here: a served name is valid by construction, so only a miss pays for the check."""
        model = self.models.get(name)
        if model is None:
            validate_name(name)
            raise not_found(f"model {name!r} is not served; available: {', '.join(self.names())}")
        if version and version != model.version:
            raise not_found(f"model {name!r} has no version {version!r}; available: {model.version or 'none'}")
        return model

    def get(self, name: str, version: str = "") -> ServedModel:
        """The ready model `name`; a model that failed to load is UNAVAILABLE, with its error."""
        model = self.lookup(name, version)
        if not model.ready:
            raise unavailable(f"model {name!r} is not ready: {model.error}")
        return model
