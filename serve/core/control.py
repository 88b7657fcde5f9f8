"""Model control, as Triton's --model-control-mode names it: which models are served, and
how that changes while the server runs.

- none: every model in the directory, loaded at start; nothing changes after.
- poll: the same at start, then the directory is read every --repository-poll-secs: a new
  or changed version loads beside the one serving, warms up, then takes new requests; a
  removed one stops taking them. A file is loaded only once it has not changed for one
  poll (so a file still being copied is not read half-written), and one that fails to load
  leaves what was serving in place, is logged once (until it changes again) and shows in
  the repository index as UNAVAILABLE with the reason.
- explicit: only the models named by --load-model at start, then Triton's repository
  extension: load (or reload) and unload one model by name.

Every change is a new snapshot of the registry (new requests see it at once); a version
that left it retires once the requests holding it are answered (serve.core.registry).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import failed_precondition, invalid, not_found
from .device import DeviceError
from .inference import InferenceCore, batch_policy
from .records import RepositoryEntry
from .registry import (ModelLoadError, ModelRegistry, ServedModel, broken, load_model, load_sources,
                       validate_name)
from .repository import ModelSource, find_models, version_key
from .warmup import warm_up

log = logging.getLogger("serve")

MODES = ("none", "poll", "explicit")
RETIRE_WAIT_S = 600.0  # how long a retiring version waits for the requests holding it


@dataclass(frozen=True)
class ControlSettings:
    directory: Path
    mode: str = "none"
    poll_s: float = 15.0
    load: tuple[str, ...] = ()  # explicit: the models to load at start
    model_name: str | None = None
    device: str = "cpu"
    threads: int = 0  # onnxruntime intra-op threads per model
    strict: bool = False
    warmup: bool = True


def startup_sources(settings: ControlSettings) -> list[ModelSource]:
    """The model versions to load at start, found without loading one; FileNotFoundError,
    NotADirectoryError or ValueError, in one line, for a directory (or a --load-model) that
    cannot serve what it is asked to. (With several worker processes, the command line asks
    this before any of them starts.)"""
    sources = find_models(settings.directory, settings.model_name)
    if settings.mode == "explicit":
        names = {s.name for s in sources}
        for name in settings.load:
            if name not in names:
                raise ValueError(f"--load-model {name}: no such model in {settings.directory}; it holds "
                                 f"{', '.join(sorted(names)) or 'none'}")
        return [s for s in sources if s.name in settings.load]
    if not sources and settings.mode == "none":
        raise FileNotFoundError(f"no models in {settings.directory}: expected <name>.onnx files or "
                                "<name>/<version>/model.onnx folders")
    return sources


def fingerprint(source: ModelSource) -> tuple:
    """What says a version's files changed: each one's size and modification time (the model
    file, its folder's other files such as external data, config.pbtxt, labels.txt)."""
    paths = {source.path}
    if source.version and source.path.parent.is_dir():
        paths |= {p for p in source.path.parent.iterdir() if p.is_file()}
    for extra in (source.labels_file, source.path.parent.parent / "config.pbtxt" if source.version else None):
        if extra is not None:
            paths.add(extra)
    stats = []
    for path in sorted(paths):
        try:
            st = path.stat()
            stats.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((str(path), -1, -1))
    return (source.error, *stats)


def _key(source: ModelSource) -> str:
    return source.version or str(source.path)


class ModelControl:
    def __init__(self, registry: ModelRegistry, engine: InferenceCore, settings: ControlSettings,
                 on_retire=None) -> None:
        self.registry = registry
        self.engine = engine
        self.settings = settings
        self.on_retire = on_retire  # told of each retired version (the feature maps drop its session)
        self._changing = threading.Lock()  # one load, unload or poll at a time
        self._loaded: dict[str, dict[str, tuple]] = {}  # name -> source key -> fingerprint it was loaded from
        self._seen: dict[str, dict[str, tuple]] = {}  # poll: name -> source key -> fingerprint last seen
        self._failed: dict[tuple[str, str], tuple[tuple, str]] = {}  # (name, key) -> (fingerprint, reason)
        self._unloaded: set[str] = set()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- start ------------------------------------------------------------------------

    def start_models(self) -> None:
        """The models to serve from the start, loaded, warmed up and published."""
        settings = self.settings
        sources = startup_sources(settings)
        loaded = load_sources(sources, settings.device, strict=settings.strict, threads=settings.threads)
        fingerprints = {s.name: {} for s in sources}
        for source in sources:
            fingerprints[source.name][_key(source)] = fingerprint(source)
        for name, versions in loaded.items():
            for version, model in versions.items():
                try:
                    self._ready(model)
                except ModelLoadError as e:  # a version whose warm-up fails would fail its first request
                    if settings.strict:
                        raise
                    versions[version] = broken(model.source, str(e))
            self._publish(name, versions, fingerprints[name])

    def start_polling(self) -> None:
        if self.settings.mode == "poll" and self._poller is None:
            self._poller = threading.Thread(target=self._poll_loop, name="model-poll", daemon=True)
            self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(30)

    # -- explicit -----------------------------------------------------------------------

    def _require(self, mode: str, what: str) -> None:
        if self.settings.mode != mode:
            raise failed_precondition(f"{what} is not allowed with --model-control-mode {self.settings.mode}; "
                                      f"start the server with --model-control-mode {mode}")

    def load(self, name: str) -> None:
        """Load (or reload) model `name` from the directory, every version its policy selects;
        on success it replaces what served under that name, on failure nothing changes."""
        self._require("explicit", "loading a model")
        validate_name(name)
        with self._changing:
            try:
                sources = [s for s in self._scan() if s.name == name]
            except (FileNotFoundError, NotADirectoryError, ValueError) as e:
                raise not_found(f"model {name!r} cannot be loaded: {e}") from None
            if not sources:
                raise not_found(f"no model {name!r} in the repository {self.settings.directory}")
            versions: dict[str, ServedModel] = {}
            for source in sources:
                if source.error:
                    raise invalid(f"model {name!r} cannot be loaded: {source.error}")
                try:
                    model = load_model(source, self.settings.device, self.settings.threads)
                    self._ready(model)
                except (ModelLoadError, DeviceError) as e:  # a device that cannot run it, as _try_load
                    raise invalid(f"model {name!r} cannot be loaded: {e}") from None
                versions[model.version] = model
            self._unloaded.discard(name)
            self._publish(name, versions, {_key(s): fingerprint(s) for s in sources})
            log.info("model %s loaded: %s", name, "; ".join(
                f"version {v}" + (f", {versions[v].warmup}" if versions[v].warmup else "")
                for v in sorted(versions, key=version_key)))

    def unload(self, name: str) -> None:
        """Stop serving model `name`: new requests for it are NOT_FOUND at once; the ones it
        holds are answered first."""
        self._require("explicit", "unloading a model")
        validate_name(name)
        with self._changing:
            if name not in self.registry.models:
                if name in {s.name for s in self._scan()}:
                    return  # in the repository, not loaded: nothing to do, as Triton answers
                raise not_found(f"model {name!r} is not loaded, nor in the repository {self.settings.directory}")
            self._publish(name, {}, {})
            self._unloaded.add(name)
            log.info("model %s unloaded", name)

    # -- poll -------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            try:
                self.poll()
            except Exception:  # never let the poller die: the next poll tries again
                log.exception("model repository poll failed")

    def poll(self) -> None:
        """One look at the directory: what is new, changed or gone since the last."""
        with self._changing:
            sources = self._scan()
            by_name = _by_name(sources)
            for name in sorted(set(by_name) | set(self.registry.versions)):
                self._poll_model(name, by_name.get(name, []))

    def _poll_model(self, name: str, sources: list[ModelSource]) -> None:
        seen = {_key(s): fingerprint(s) for s in sources}
        settled = self._seen.get(name) == seen  # unchanged for one poll interval
        self._seen[name] = seen
        loaded = self._loaded.get(name, {})
        if seen == loaded:
            return
        if not sources:  # gone: stop serving it
            if name in self.registry.versions:
                self._publish(name, {}, {})
                log.info("model %s: gone from %s, unloaded", name, self.settings.directory)
            return
        if not settled:
            return  # changed since the last poll: wait until it stays as it is for one
        current = {_key(m.source): m for m in self.registry.versions.get(name, {}).values() if m.source}
        versions, fingerprints = {}, {}
        for source in sources:
            key = _key(source)
            model, fp = current.get(key), loaded.get(key)
            if model is None or fp != seen[key]:
                fresh = self._try_load(source, seen[key])
                if fresh is not None:  # else what served (if anything) stays
                    model, fp = fresh, seen[key]
            if model is not None:
                versions[model.version] = model
                fingerprints[key] = fp
        if {id(m) for m in versions.values()} != {id(m) for m in current.values()}:
            self._publish(name, versions, fingerprints)

    def _try_load(self, source: ModelSource, fp: tuple) -> ServedModel | None:
        failure = self._failed.get((source.name, _key(source)))
        if failure is not None and failure[0] == fp:
            return None  # failed as it is now: logged once, tried again when it changes
        try:
            if source.error:
                raise ModelLoadError(source.error)
            model = load_model(source, self.settings.device, self.settings.threads)
            self._ready(model)
        except (ModelLoadError, DeviceError) as e:
            self._failed[(source.name, _key(source))] = (fp, str(e))
            log.error("model %s version %s NOT LOADED, what served stays: %s", source.name,
                      source.version or "-", e)
            return None
        self._failed.pop((source.name, _key(source)), None)
        log.info("model %s version %s loaded from %s%s", model.name, model.version, source.path,
                 f", {model.warmup}" if model.warmup else "")
        return model

    # -- shared -------------------------------------------------------------------------

    def _scan(self) -> list[ModelSource]:
        try:
            return find_models(self.settings.directory, self.settings.model_name)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            if self.settings.mode != "poll":
                raise
            log.error("model repository %s cannot be read; what serves stays", self.settings.directory)
            return [s for versions in self.registry.versions.values() for m in versions.values()
                    if (s := m.source) is not None]

    def _ready(self, model: ServedModel) -> None:
        """Warm up a version that loaded, at the batch its batcher will form."""
        if self.settings.warmup and model.ready:
            policy = batch_policy(model, self.engine.limits)
            model.warmup = warm_up(model, policy.max_batch if policy else 1)

    def _publish(self, name: str, versions: dict[str, ServedModel], fingerprints: dict[str, tuple]) -> None:
        """Serve `versions` as `name` (loaded from files with these fingerprints); retire what left."""
        for model in versions.values():
            if model.stats is None:
                self.engine.attach(model)
        if versions:
            self._loaded[name] = fingerprints
        else:
            self._loaded.pop(name, None)
        for old in self.registry.publish(name, versions):
            threading.Thread(target=self._retire, args=(old,), name=f"retire-{name}", daemon=True).start()

    def _retire(self, model: ServedModel) -> None:
        if not model.retire(RETIRE_WAIT_S):
            log.warning("model %s version %s: still held by requests after %.0f s; retired anyway", model.name,
                        model.version, RETIRE_WAIT_S)
        self.engine.detach(model)
        if self.on_retire is not None:
            self.on_retire(model)
        model.session = model.small_session = None  # its memory goes with the last reference

    def in_repository(self, name: str) -> bool:
        try:
            return any(s.name == name for s in self._scan())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return False

    def index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Triton's repository index: every served version, every version that failed to
        load beside them, and (explicit) the repository's models that are not loaded."""
        entries = [RepositoryEntry(m.name, m.version, "READY" if m.ready else "UNAVAILABLE", m.error)
                   for m in self.registry.all_models()]
        served = {(e.name, e.version) for e in entries}
        for (name, key), (_, reason) in sorted(self._failed.items()):
            version = key if key.isdigit() else ""
            if (name, version) not in served:
                entries.append(RepositoryEntry(name, version, "UNAVAILABLE", reason))
        if self.settings.mode == "explicit":
            loaded = set(self.registry.models)
            try:
                names = sorted({s.name for s in self._scan()} - loaded)
            except (FileNotFoundError, NotADirectoryError, ValueError):
                names = []
            entries += [RepositoryEntry(n, state="UNAVAILABLE", reason="unloaded") if n in self._unloaded
                        else RepositoryEntry(n) for n in names]
        if ready_only:
            entries = [e for e in entries if e.state == "READY"]
        return sorted(entries, key=lambda e: (e.name, version_key(e.version)))


def _by_name(sources: list[ModelSource]) -> dict[str, list[ModelSource]]:
    grouped: dict[str, list[ModelSource]] = {}
    for source in sources:
        grouped.setdefault(source.name, []).append(source)
    return grouped

