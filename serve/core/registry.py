"""The served models: every version found in the models directory, loaded with its signature
(from the model file), labels and normalization (from its metadata, or config.pbtxt and
labels.txt).

The set of served versions can change while the server runs (serve.core.control: Triton's
model control). It is an immutable snapshot, replaced whole for each change, so a lookup
never takes a lock; a request leases the version it found, and a version replaced or
unloaded is retired (its batcher closed, its sessions dropped) only once the requests that
hold it have been answered."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from zoo.normalization import DEFAULT_PIXEL_SCALE, Normalization, parse_normalization

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


class ModelLoadError(Exception):
    """A model file that cannot be served; the message names the file."""


@dataclass(eq=False)  # compared and hashed by identity: two loads of one file are two versions
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
    # What serving it takes, set by the engine when it is published (serve.core.inference).
    policy: object | None = None  # its BatchPolicy, None: each request runs as it came
    batcher: object | None = None  # its Batcher, with a policy
    stats: object | None = None  # its StatsCounter
    source: ModelSource | None = None  # where it was loaded from (model control compares these)
    warmup: str = ""  # what its warm-up ran, and how long it took
    leases: int = 0  # requests holding it now
    retiring: bool = False
    _leased: threading.Condition = field(default_factory=threading.Condition, repr=False)

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

    def acquire(self) -> bool:
        """Hold this version for one request; False if it is being retired."""
        with self._leased:
            if self.retiring:
                return False
            self.leases += 1
            return True

    def release(self) -> None:
        with self._leased:
            self.leases -= 1
            if not self.leases:
                self._leased.notify_all()

    def retire(self, timeout: float | None = None) -> bool:
        """Take no new requests, and wait (up to `timeout`) for those holding it; True once none do."""
        with self._leased:
            self.retiring = True
            return self._leased.wait_for(lambda: not self.leases, timeout)

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
        return parse_normalization(0.0, 1.0, meta.get("pixel_scale", DEFAULT_PIXEL_SCALE))
    try:
        return parse_normalization(meta["mean"], meta["std"], meta.get("pixel_scale", DEFAULT_PIXEL_SCALE),
                                   classifier.channels)
    except ValueError as e:
        raise ModelLoadError(f"{source.path}: metadata {e}") from None


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
    model = ServedModel(name=source.name, path=path, config=source.config, source=source)
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


def broken(source: ModelSource, error: str) -> ServedModel:
    """A version that could not be loaded, kept (not ready) so that every answer names why."""
    return ServedModel(name=source.name, path=source.path, version=source.version or "1", error=error,
                       source=source)


def load_sources(sources: list[ModelSource], device: str, *, strict: bool = False, threads: int = 0
                 ) -> dict[str, dict[str, ServedModel]]:
    """Each source loaded (name -> version -> model). A broken one is kept as not ready with
    its error, unless `strict`, which raises instead. A DeviceError always raises."""
    versions: dict[str, dict[str, ServedModel]] = {}
    for source in sources:
        try:
            model = load_model(source, device, threads)
        except ModelLoadError as e:
            if strict:
                raise
            model = broken(source, str(e))
        versions.setdefault(model.name, {})[model.version] = model
    return versions


@dataclass(frozen=True)
class Snapshot:
    """The served versions at one moment: name -> version -> model, and each name's default."""

    versions: dict[str, dict[str, ServedModel]]
    models: dict[str, ServedModel]

    @classmethod
    def of(cls, versions: dict[str, dict[str, ServedModel]]) -> "Snapshot":
        versions = {name: dict(v) for name, v in versions.items() if v}
        return cls(versions, {name: _latest(v) for name, v in versions.items()})


Listener = Callable[[str], None]  # told the name of each model whose versions changed


class ModelRegistry:
    def __init__(self, versions: dict[str, dict[str, ServedModel]] | None = None) -> None:
        self._snapshot = Snapshot.of(versions or {})
        self._changing = threading.Lock()  # one change at a time; lookups never wait for it
        self._listeners: list[Listener] = []

    @classmethod
    def load_dir(cls, directory: Path, device: str, *, strict: bool = False, threads: int = 0,
                 model_name: str | None = None) -> "ModelRegistry":
        """Every model version in `directory` (the one there under `model_name`, if given:
        see find_models). A broken one is kept as not ready with its error, unless `strict`,
        which raises instead. A DeviceError always raises."""
        sources = find_models(directory, model_name)
        if not sources:
            raise FileNotFoundError(f"no models in {directory}: expected <name>.onnx files or "
                                    "<name>/<version>/model.onnx folders")
        return cls(load_sources(sources, device, strict=strict, threads=threads))

    @property
    def versions(self) -> dict[str, dict[str, ServedModel]]:
        return self._snapshot.versions

    @property
    def models(self) -> dict[str, ServedModel]:
        return self._snapshot.models

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, name: str, versions: dict[str, ServedModel]) -> list[ServedModel]:
        """Serve `versions` as model `name` (none: it is no longer served), at once for new
        requests; returns the versions that left, for their retirement."""
        with self._changing:
            old = self._snapshot.versions.get(name, {})
            self._snapshot = Snapshot.of({**self._snapshot.versions, name: versions})
        for listener in self._listeners:
            listener(name)
        return [m for m in old.values() if all(m is not n for n in versions.values())]

    def all_models(self) -> list[ServedModel]:
        """Every model version it was asked to serve, ready or not, by name then version."""
        snapshot = self._snapshot
        return [m for name in sorted(snapshot.models) for m in sorted(
            snapshot.versions[name].values(), key=lambda m: version_key(m.version))]

    def metric_label(self, name: str) -> str:
        """A model name for metric labels: only served names, so clients cannot grow them."""
        return name if name in self.models else "(other)"

    def lookup(self, name: str, version: str = "") -> ServedModel:
        """The model `name` (at `version`, if given, else its latest), ready or not; NOT_FOUND
        otherwise (or INVALID_ARGUMENT for a name that could never be served). Every request
        comes through here: a served name is valid by construction, so only a miss pays for the check."""
        snapshot = self._snapshot
        model = snapshot.models.get(name)
        if model is None:
            validate_name(name)
            raise not_found(f"model {name!r} is not served; available: {', '.join(sorted(snapshot.models)) or 'none'}")
        if version and version != model.version:
            model = snapshot.versions[name].get(version)
            if model is None:
                raise not_found(f"model {name!r} has no version {version[:40]!r}; available: "
                                f"{', '.join(sorted(snapshot.versions[name], key=version_key))}")
        return model

    def get(self, name: str, version: str = "") -> ServedModel:
        """The ready model `name`; a model that failed to load is UNAVAILABLE, with its error."""
        model = self.lookup(name, version)
        if not model.ready:
            raise unavailable(f"model {name!r} is not ready: {model.error}")
        return model

    @contextlib.contextmanager
    def lease(self, name: str, version: str = ""):
        """The ready model `name` (as get), held for one request: a version replaced meanwhile
        is retired only after this request is answered."""
        model = self.get(name, version)
        while not model.acquire():  # replaced between the lookup and now: its successor is published
            model = self.get(name, version)
        try:
            yield model
        finally:
            model.release()
