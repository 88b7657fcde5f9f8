"""What both APIs share: the models, their batchers, limits, statistics and metrics, and
the wrapper that turns every servicer method's outcome into a status and a metric."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from .batching import Announcement, Batcher
from .errors import RequestError, unavailable
from .metrics import Metrics
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
        self.draining = threading.Event()
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

    def infer(self, model: ServedModel, x: np.ndarray, context: grpc.ServicerContext,
              announcement: Announcement | None = None) -> np.ndarray:
        """Logits for the normalized batch `x`, through the model's batcher when batching is on."""
        if self.draining.is_set():
            raise unavailable("the server is shutting down")
        start = time.perf_counter()
        ok = False
        try:
            batcher = self.batchers.get(model.name)
            if batcher is None:
                out = self._run_direct(model, x)
            else:
                out = batcher.infer(x, context.is_active, context.time_remaining(), announcement)
            ok = True
            return out
        except concurrent.futures.TimeoutError:
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while queued for inference") from None
        except concurrent.futures.CancelledError:
            raise RequestError(grpc.StatusCode.CANCELLED, "request cancelled") from None
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


def handler(api: str, method: str, model_field: str | None = None):
    """Wrap a servicer method: RequestError -> its status, anything else -> INTERNAL (logged),
    and every outcome counted and timed in the metrics."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(self, request, context):
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return fn(self, request, context)
            except RequestError as e:
                code = e.code
                context.abort(e.code, e.message)
            except Exception as e:  # a bug of ours, never the client's mistake
                code = grpc.StatusCode.INTERNAL
                log.exception("%s.%s failed", api, method)
                context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}")
            finally:
                model = getattr(request, model_field, "") if model_field else ""
                self.core.metrics.observe_request(api, method, self.core.metric_label(model) if model else "",
                                                  code.name, time.perf_counter() - start)

        return wrapper

    return decorate
