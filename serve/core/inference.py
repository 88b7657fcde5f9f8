"""What every front end shares: the models, their batchers, limits, statistics and metrics.

A front end decodes its request (serve.core.decode), then calls `InferenceCore.infer` with
the client's time left and a callable saying whether the client is still there; the core
raises RequestError, which the front end turns into its own status."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .batching import Announcement, Batcher
from .errors import Code, RequestError, unavailable
from .limits import DecodeBudget, Limits
from .metrics import Metrics
from .readiness import Readiness
from .registry import ModelRegistry, ServedModel

log = logging.getLogger("serve")


@dataclass
class ModelStats:
    """Counters in the shape of KServe's ModelStatistics (times in nanoseconds)."""

    inference_count: int = 0  # images answered
    execution_count: int = 0  # onnxruntime runs
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    compute_ns: int = 0
    last_inference_ms: int = 0
    batches: dict[int, list[int]] = field(default_factory=dict)  # size -> [count, compute ns]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class InferenceCore:
    def __init__(self, registry: ModelRegistry, limits: Limits, metrics: Metrics, *,
                 strict_readiness: bool = True) -> None:
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self.decode_budget = DecodeBudget(limits.decode_budget_bytes)
        self.readiness = Readiness(registry, strict_readiness)
        # Set once shutdown begins. Front ends refuse requests that arrive after it (admit());
        # those already received run to the end.
        self.draining = self.readiness.draining
        self.stats = {model.key: ModelStats() for model in registry.all_models()}
        # Batching follows the model: only one whose every input and output has a dynamic
        # batch axis goes through a batcher (one input, one output: the batcher's run). A
        # fixed-batch model always runs alone, each request as it came.
        self.batchers: dict[tuple[str, str], Batcher] = {}
        for model in registry.all_models():
            signature = model.signature
            if (model.ready and limits.max_batch > 0 and signature.batched
                    and len(signature.inputs) == len(signature.outputs) == 1):
                self.batchers[model.key] = Batcher(model.run, limits.max_batch, limits.batch_delay_s,
                                                   on_batch=functools.partial(self._on_batch, model.key),
                                                   instances=limits.instances)

    def _on_batch(self, key: tuple[str, str], images: int, seconds: float) -> None:
        self.metrics.observe_batch(key[0], images, seconds)
        stats = self.stats[key]
        with stats.lock:
            stats.execution_count += 1
            stats.compute_ns += int(seconds * 1e9)
            entry = stats.batches.setdefault(images, [0, 0])
            entry[0] += 1
            entry[1] += int(seconds * 1e9)

    def _run_direct(self, model: ServedModel, x: np.ndarray) -> np.ndarray:
        """Without a batcher: in one run, or one image at a time for a model of fixed batch 1."""
        if model.signature.fixed_batch == 1 and len(x) > 1:
            return np.concatenate([self._run_direct(model, x[i : i + 1]) for i in range(len(x))])
        start = time.perf_counter()
        out = model.run(x)
        self._on_batch(model.key, len(x), time.perf_counter() - start)
        return out

    def expecting(self, model: ServedModel):
        """Tell the model's batcher a request is on its way (being decoded)."""
        batcher = self.batchers.get(model.key)
        return batcher.expecting() if batcher else contextlib.nullcontext(None)

    def infer(self, model: ServedModel, x: np.ndarray, *, time_left_s: float | None = None,
              is_active: Callable[[], bool] = lambda: True,
              announcement: Announcement | None = None) -> np.ndarray:
        """The first output for `x` as the first input (an image classifier's logits for a
        normalized batch), through the model's batcher when it has one.

        `time_left_s`: seconds until the client's deadline (None: no deadline); it bounds the
        wait in the queue. `is_active`: False once the client has gone (cancelled, timed out),
        so its images are dropped before they cost a run."""
        with self._outcome(model, len(x)):
            batcher = self.batchers.get(model.key)
            if batcher is None:
                return self._run_direct(model, x)
            return batcher.infer(x, is_active, time_left_s, announcement)

    def infer_all(self, model: ServedModel, feed: dict[str, np.ndarray], *, time_left_s: float | None = None,
                  is_active: Callable[[], bool] = lambda: True,
                  announcement: Announcement | None = None) -> list[np.ndarray]:
        """Every output, in the model's order, for a complete feed (decode_inputs' result)."""
        if model.key in self.batchers:
            return [self.infer(model, feed[model.input_name], time_left_s=time_left_s, is_active=is_active,
                               announcement=announcement)]
        first = feed[model.input_name]
        images = len(first) if model.signature.batched else 1
        with self._outcome(model, images):
            start = time.perf_counter()
            outputs = model.run_feed(feed)
            self._on_batch(model.key, images, time.perf_counter() - start)
            return outputs

    def admit(self) -> None:
        """For a front end, as a request arrives: refused (UNAVAILABLE) once draining began."""
        if self.draining.is_set():
            raise unavailable("the server is shutting down")

    @contextlib.contextmanager
    def _outcome(self, model: ServedModel, images: int):
        """Count and time the request; the batcher's outcomes as RequestErrors."""
        start = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        except concurrent.futures.TimeoutError:
            raise RequestError(Code.DEADLINE_EXCEEDED, "deadline exceeded while queued for inference") from None
        except concurrent.futures.CancelledError:
            raise RequestError(Code.CANCELLED, "request cancelled") from None
        finally:
            self._count(model.key, images, ok, time.perf_counter() - start)

    def _count(self, key: tuple[str, str], images: int, ok: bool, seconds: float) -> None:
        stats = self.stats[key]
        with stats.lock:
            if ok:
                stats.inference_count += images
                stats.success_count += 1
                stats.success_ns += int(seconds * 1e9)
                stats.last_inference_ms = int(time.time() * 1000)
            else:
                stats.fail_count += 1
                stats.fail_ns += int(seconds * 1e9)

    def metric_label(self, name: str) -> str:
        """A model name for metric labels: only served names, so clients cannot grow them."""
        return name if name in self.registry.models else "(other)"

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)
