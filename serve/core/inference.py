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
from .metrics import Metrics
from .readiness import Readiness
from .registry import ModelRegistry, ServedModel

log = logging.getLogger("serve")


@dataclass
class Limits:
    max_batch: int = 64  # images per coalesced onnxruntime run; 0 turns dynamic batching off
    batch_delay_s: float = 0.002  # how long the first request of a batch waits for company
    max_request_images: int = 1024  # images one request may carry
    instances: int = 1  # batches of one model run at once (Triton's instance_group count)


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
    def __init__(self, registry: ModelRegistry, limits: Limits, metrics: Metrics) -> None:
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self.readiness = Readiness(registry)
        self.draining = self.readiness.draining  # set once shutdown begins: new requests are refused
        self.stats = {name: ModelStats() for name in registry.names()}
        self.batchers: dict[str, Batcher] = {}
        for name, model in registry.models.items():
            if model.ready and limits.max_batch > 0:
                self.batchers[name] = Batcher(model.run, limits.max_batch, limits.batch_delay_s,
                                              on_batch=functools.partial(self._on_batch, name),
                                              instances=limits.instances)

    def _on_batch(self, name: str, images: int, seconds: float) -> None:
        self.metrics.observe_batch(name, images, seconds)
        stats = self.stats[name]
        with stats.lock:
            stats.execution_count += 1
            stats.compute_ns += int(seconds * 1e9)
            entry = stats.batches.setdefault(images, [0, 0])
            entry[0] += 1
            entry[1] += int(seconds * 1e9)

    def _run_direct(self, model: ServedModel, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = model.run(x)
        self._on_batch(model.name, len(x), time.perf_counter() - start)
        return out

    def expecting(self, model: ServedModel):
        """Tell the model's batcher a request is on its way (being decoded)."""
        batcher = self.batchers.get(model.name)
        return batcher.expecting() if batcher else contextlib.nullcontext(None)

    def infer(self, model: ServedModel, x: np.ndarray, *, time_left_s: float | None = None,
              is_active: Callable[[], bool] = lambda: True,
              announcement: Announcement | None = None) -> np.ndarray:
        """Logits for the normalized batch `x`, through the model's batcher when batching is on.

        `time_left_s`: seconds until the client's deadline (None: no deadline); it bounds the
        wait in the queue. `is_active`: False once the client has gone (cancelled, timed out),
        so its images are dropped before they cost a run."""
        if self.draining.is_set():
            raise unavailable("the server is shutting down")
        start = time.perf_counter()
        ok = False
        try:
            batcher = self.batchers.get(model.name)
            if batcher is None:
                out = self._run_direct(model, x)
            else:
                out = batcher.infer(x, is_active, time_left_s, announcement)
            ok = True
            return out
        except concurrent.futures.TimeoutError:
            raise RequestError(Code.DEADLINE_EXCEEDED, "deadline exceeded while queued for inference") from None
        except concurrent.futures.CancelledError:
            raise RequestError(Code.CANCELLED, "request cancelled") from None
        finally:
            self._count(model.name, len(x), ok, time.perf_counter() - start)

    def _count(self, name: str, images: int, ok: bool, seconds: float) -> None:
        stats = self.stats[name]
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
