"""The served models: every version found in the models directory, loaded with its signature
(from the model file), labels and normalization (from its metadata, or config.pbtxt and
labels.txt)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .device import CPU, DeviceError, first_line, make_session
from .errors import failed_precondition, invalid, not_found, unavailable
from .repository import NAME_PATTERN, ModelSource, find_models, version_key
from .signature import Classifier, Signature, SignatureError, read_signature

log = logging.getLogger("serve")

# Runs of fewer images than this go to a single-threaded session: waking onnxruntime's other
# intra-op threads costs more than they save on so little work. So do all runs while the
# model is crowded (a run started beside another in the last CROWDED_MEMORY_S seconds),
# whatever their size: the cores are taken, and the extra threads would only wait for them
# (bench/serve_bench.py: less server CPU per request, more req/s). A large run on a quiet
# model uses every thread.
SINGLE_THREAD_BELOW = 16
CROWDED_MEMORY_S = 0.1
DEFAULT_PIXEL_SCALE = 1 / 255  # raw 0..255 pixels to 0..1 when nothing else is said


class ModelLoadError(Exception):
    """A model file that cannot be served; the message names the file."""


@dataclass(frozen=True)
class Normalization:
    """Raw pixels -> model input: x * pixel_scale, then (x - mean) / std per channel."""

    pixel_scale: float = DEFAULT_PIXEL_SCALE
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


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
    signature: Signature | None = None
    labels: list[str] = field(default_factory=list)  # the classifier's class names (indices if none given)
    normalization: Normalization = field(default_factory=Normalization)
    metadata: dict[str, str] = field(default_factory=dict)
    config: object | None = None  # Triton's ModelConfig from config.pbtxt (serve.gen.model_config_pb2), if any
    input_name: str = "input"  # the first input and output: what the batcher runs
    output_name: str = "logits"
    running: int = 0  # onnxruntime runs in flight
    crowded_at: float = -1e9  # when a run last started beside another (time.monotonic())
    _running_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.version

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> list[int]:
        return list(self.signature.inputs[0].shape) if self.signature and self.signature.inputs else []

    def classifier(self) -> Classifier:
        """The image-classifier view, for Predict; FAILED_PRECONDITION for any other model."""
        if self.signature.classifier is None:
            inputs = ", ".join(f"{t.name} {t.datatype} {list(t.shape)}" for t in self.signature.inputs)
            raise failed_precondition(
                f"model {self.name!r} is not an image classifier (inputs: {inputs}; Predict needs one FP32 "
                "input (N, 1 or 3, H, W) and class scores (N, classes)); send its tensors with KServe ModelInfer")
        return self.signature.classifier

    def run(self, x: np.ndarray) -> np.ndarray:
        """The first output for `x` as the first input: the batcher's run."""
        return self._run([self.output_name], {self.input_name: x}, len(x))[0]

    def run_feed(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output, in the model's order, for a complete feed."""
        first = feed[self.input_name]
        return self._run(None, feed, len(first) if first.ndim else 1)

    def _run(self, names, feed, images: int) -> list[np.ndarray]:
        now = time.monotonic()
        with self._running_lock:
            if self.running:
                self.crowded_at = now
            crowded = now - self.crowded_at < CROWDED_MEMORY_S
            self.running += 1
        try:
            small = self.small_session is not None and (crowded or images < SINGLE_THREAD_BELOW)
            return (self.small_session if small else self.session).run(names, feed)
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


def _floats(text: str, key: str, channels: int, path: Path) -> tuple[float, ...]:
    """A metadata value that is a float or a JSON list of one float per channel."""
    value = json.loads(text)
    values = tuple(float(v) for v in (value if isinstance(value, list) else [value]))
    if len(values) not in (1, channels):
        raise ModelLoadError(f"{path}: metadata {key} has {len(values)} values for {channels} channels")
    return values


def _described(source: ModelSource, meta: dict[str, str]) -> dict[str, str]:
    """The model's own metadata_props, with config.pbtxt's parameters over them."""
    merged = dict(meta)
    if source.config is not None:
        for key, value in source.config.parameters.items():
            if value.string_value:
                merged[key] = value.string_value
    return merged


def _labels(source: ModelSource, meta: dict[str, str], classifier: Classifier) -> list[str]:
    if source.labels_file is not None:
        labels = [line.strip() for line in source.labels_file.read_text(encoding="utf-8").splitlines()]
        labels = [label for label in labels if label]
        origin = source.labels_file
    elif "labels" in meta:
        labels = [str(label) for label in json.loads(meta["labels"])]
        origin = "its metadata labels"
    else:
        log.info("model %s version %s: no labels in its metadata or a labels.txt: class indices serve as labels",
                 source.name, source.version or "-")
        return [str(i) for i in range(classifier.num_classes)]
    if len(labels) != classifier.num_classes:
        raise ModelLoadError(f"{source.path}: {origin} names {len(labels)} classes, but output "
                             f"{classifier.output.name!r} has {classifier.num_classes}")
    return labels


def _normalization(source: ModelSource, meta: dict[str, str], classifier: Classifier) -> Normalization:
    if "mean" not in meta or "std" not in meta:
        log.info("model %s version %s: no mean/std in its metadata or config.pbtxt: images are only scaled to 0..1",
                 source.name, source.version or "-")
        return Normalization(float(meta.get("pixel_scale", DEFAULT_PIXEL_SCALE)))
    channels = classifier.channels
    std = _floats(meta["std"], "std", channels, source.path)
    if any(s <= 0 for s in std):
        raise ModelLoadError(f"{source.path}: metadata std {list(std)} must be positive")
    return Normalization(float(meta.get("pixel_scale", DEFAULT_PIXEL_SCALE)),
                         _floats(meta["mean"], "mean", channels, source.path), std)


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Idle onnxruntime threads would otherwise spin, taking the cores that the gRPC
    # threads (and, on a small machine, the clients) need between runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load_model(source: ModelSource | Path, device: str, threads: int = 0) -> ServedModel:
    """Load one model version; raises ModelLoadError (or DeviceError) naming the file.

    Everything comes from onnxruntime itself (the graph, its signature and metadata_props),
    so the server needs no other ONNX library. The session loads from the file's path, so
    external data (model.onnx.data) resolves beside the model, never in the current directory."""
    if isinstance(source, Path):
        source = ModelSource(source.stem, source)
    if source.error:
        raise ModelLoadError(source.error)
    path = source.path
    model = ServedModel(name=source.name, path=path, config=source.config)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    try:
        model.session = make_session(str(path), device, _session_options(threads), name=model.name)
        model.signature = read_signature(model.session)
    except DeviceError:
        raise  # the device, not this file, is at fault: never hidden as one broken model
    except SignatureError as e:
        raise ModelLoadError(f"{path}: {e}") from None
    except Exception as e:  # truncated, corrupt, missing external data, or not a model at all
        raise ModelLoadError(f"{path}: cannot load as an ONNX model ({first_line(e)})") from None
    meta = model.session.get_modelmeta()
    model.metadata = dict(meta.custom_metadata_map)
    # onnxruntime reports an unset model_version as 0 or INT64_MAX; such a file is version 1.
    model.version = source.version or str(meta.version if 0 < meta.version < 2**63 - 1 else 1)
    signature = model.signature
    if not signature.inputs or not signature.outputs:
        raise ModelLoadError(f"{path}: the graph has no inputs or no outputs")
    model.input_name, model.output_name = signature.inputs[0].name, signature.outputs[0].name
    if signature.classifier is not None:
        described = _described(source, model.metadata)
        try:
            model.labels = _labels(source, described, signature.classifier)
            model.normalization = _normalization(source, described, signature.classifier)
        except (ValueError, TypeError) as e:
            raise ModelLoadError(f"{path}: unreadable labels or normalization ({e})") from None
    model.provider = model.session.get_providers()[0]
    if model.provider == CPU and threads != 1:
        model.small_session = make_session(str(path), "cpu", _session_options(1))
    model.ready = True
    return model


def _latest(versions: dict[str, ServedModel]) -> ServedModel:
    """The default version: the highest that is ready (the highest of all if none is)."""
    ordered = sorted(versions.values(), key=lambda m: version_key(m.version))
    ready = [m for m in ordered if m.ready]
    return (ready or ordered)[-1]


class ModelRegistry:
    def __init__(self, versions: dict[str, dict[str, ServedModel]]) -> None:
        self.versions = versions  # name -> version -> model
        self.models = {name: _latest(v) for name, v in versions.items()}  # name -> its default version

    @staticmethod
    def sources(directory: Path, model_name: str | None = None) -> list[ModelSource]:
        """What load_dir would load, found without loading it: FileNotFoundError,
        NotADirectoryError or ValueError (a --model-name it lacks) in one line otherwise."""
        sources = find_models(directory, model_name)
        if not sources:
            raise FileNotFoundError(f"no models in {directory}: expected <name>.onnx files or "
                                    "<name>/<version>/model.onnx folders")
        return sources

    @classmethod
    def load_dir(cls, directory: Path, device: str, *, strict: bool = False, threads: int = 0,
                 model_name: str | None = None) -> "ModelRegistry":
        """Every model version in `directory` (the one there under `model_name`, if given:
        see find_models). A broken one is kept as not ready with its error, unless `strict`,
        which raises instead. A DeviceError always raises."""
        sources = cls.sources(directory, model_name)
        versions: dict[str, dict[str, ServedModel]] = {}
        for source in sources:
            try:
                model = load_model(source, device, threads)
            except ModelLoadError as e:
                if strict:
                    raise
                model = ServedModel(name=source.name, path=source.path, version=source.version or "1", error=str(e))
            versions.setdefault(model.name, {})[model.version] = model
        return cls(versions)

    def all_models(self) -> list[ServedModel]:
        """Every model version it was asked to serve, ready or not, by name then version."""
        return [m for name in self.names() for m in sorted(
            self.versions[name].values(), key=lambda m: version_key(m.version))]

    def names(self) -> list[str]:
        return sorted(self.models)

    def metric_label(self, name: str) -> str:
        """A model name for metric labels: only served names, so clients cannot grow them."""
        return name if name in self.models else "(other)"

    def lookup(self, name: str, version: str = "") -> ServedModel:
        """The model `name` (at `version`, if given, else its latest), ready or not; NOT_FOUND
        otherwise (or INVALID_ARGUMENT for a name that could never be served). Every request
        comes through here: a served name is valid by construction, so only a miss pays for the check."""
        model = self.models.get(name)
        if model is None:
            validate_name(name)
            raise not_found(f"model {name!r} is not served; available: {', '.join(self.names())}")
        if version and version != model.version:
            model = self.versions[name].get(version)
            if model is None:
                raise not_found(f"model {name!r} has no version {version[:40]!r}; available: "
                                f"{', '.join(sorted(self.versions[name], key=version_key))}")
        return model

    def get(self, name: str, version: str = "") -> ServedModel:
        """The ready model `name`; a model that failed to load is UNAVAILABLE, with its error."""
        model = self.lookup(name, version)
        if not model.ready:
            raise unavailable(f"model {name!r} is not ready: {model.error}")
        return model
