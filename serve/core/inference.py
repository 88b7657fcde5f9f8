"""Running the models: each model's batcher (when it takes one) or a direct run, the
statistics of every run, and the batcher's outcomes as the core's errors.

The data plane (serve.core.dataplane) calls `infer` / `infer_all` with a decoded batch and
the client's deadline; nothing here decodes, encodes or knows a protocol."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import time
from dataclasses import dataclass

import numpy as np

from .batching import Announcement, Batcher, RunTiming
from .errors import Code, RequestError
from .limits import Limits
from .metrics import Metrics
from .records import Deadline
from .registry import ModelRegistry, ServedModel
from .stats import StatsCounter


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int  # images per coalesced run: the largest batch the batcher forms
    delay_s: float  # how long a batch waits for company
    max_queue: int = 0  # requests that may wait at once (0: no limit)


def batch_policy(model: ServedModel, limits: Limits) -> BatchPolicy | None:
    """How the model's requests are batched, None for not at all.

    Batching follows the model: only one whose every input and output has a dynamic batch
    axis goes through a batcher (one input, one output: the batcher's run); a fixed-batch
    model always runs alone, each request as it came. `--max-batch 0` turns batching off.
    A model with a config.pbtxt is batched as Triton would: only with `dynamic_batching`,
    up to its `max_batch_size` after its `max_queue_delay_microseconds`, with at most its
    `default_queue_policy.max_queue_size` requests waiting (the server's --max-batch,
    --batch-delay-ms and --max-queue-size where it gives none)."""
    signature = model.signature
    if not (model.ready and limits.max_batch > 0 and signature.batched
            and len(signature.inputs) == len(signature.outputs) == 1):
        return None
    config = model.config
    if config is None:
        return BatchPolicy(limits.max_batch, limits.batch_delay_s, limits.max_queue_size)
    if not config.HasField("dynamic_batching"):
        return None
    batching = config.dynamic_batching
    delay_us = batching.max_queue_delay_microseconds
    return BatchPolicy(config.max_batch_size or limits.max_batch, delay_us / 1e6 if delay_us else limits.batch_delay_s,
                       batching.default_queue_policy.max_queue_size or limits.max_queue_size)


class InferenceCore:
    def __init__(self, registry: ModelRegistry, limits: Limits, metrics: Metrics) -> None:
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        for model in registry.all_models():
            self.attach(model)

    def attach(self, model: ServedModel) -> None:
        """Give a version what serving it takes: its statistics, and its batcher if it is batched."""
        model.stats = StatsCounter()
        model.policy = batch_policy(model, self.limits)
        if model.policy is not None:
            model.batcher = Batcher(model.run, model.policy.max_batch, model.policy.delay_s,
                                    on_batch=functools.partial(self._on_batch, model),
                                    instances=self.limits.instances, max_queue=model.policy.max_queue,
                                    on_refused=functools.partial(self.metrics.observe_refused, model.name,
                                                                 "queue_full"))

    def detach(self, model: ServedModel, timeout: float = 5.0) -> None:
        """A retired version's batcher closed (its requests are answered by then)."""
        if model.batcher is not None:
            model.batcher.close(timeout)

    def _on_batch(self, model: ServedModel, images: int, gather_s: float, infer_s: float, split_s: float) -> None:
        self.metrics.observe_batch(model.name, images, infer_s)
        model.stats.run(images, gather_s, infer_s, split_s)

    def _run_direct(self, model: ServedModel, x: np.ndarray, timing: RunTiming) -> np.ndarray:
        """Without a batcher: in one run, or one image at a time for a model of fixed batch 1."""
        if model.signature.fixed_batch == 1 and len(x) > 1:
            return np.concatenate([self._run_direct(model, x[i : i + 1], timing) for i in range(len(x))])
        start = time.perf_counter()
        out = model.run(x)
        seconds = time.perf_counter() - start
        timing.compute_s += seconds
        self._on_batch(model, len(x), 0.0, seconds, 0.0)
        return out

    def expecting(self, model: ServedModel):
        """Tell the model's batcher a request is on its way (being decoded): RESOURCE_EXHAUSTED
        at once, before any decoding, when the model's queue is full."""
        return model.batcher.expecting() if model.batcher else contextlib.nullcontext(None)

    def infer(self, model: ServedModel, x: np.ndarray, deadline: Deadline, timing: RunTiming,
              announcement: Announcement | None = None) -> np.ndarray:
        """The first output for `x` as the first input (an image classifier's logits for a
        normalized batch), through the model's batcher when it has one. The deadline
        bounds the wait in the queue; a client that has gone has its images dropped."""
        with _batcher_outcomes():
            if model.batcher is None:
                return self._run_direct(model, x, timing)
            return model.batcher.infer(x, deadline.is_active, deadline.time_left_s, announcement, timing)

    def infer_all(self, model: ServedModel, feed: dict[str, np.ndarray], deadline: Deadline, timing: RunTiming,
                  announcement: Announcement | None = None) -> list[np.ndarray]:
        """Every output, in the model's order, for a complete feed (decode_inputs' result)."""
        if model.batcher is not None:
            return [self.infer(model, feed[model.input_name], deadline, timing, announcement)]
        first = feed[model.input_name]
        images = len(first) if model.signature.batched else 1
        start = time.perf_counter()
        outputs = model.run_feed(feed)
        timing.compute_s = time.perf_counter() - start
        self._on_batch(model, images, 0.0, timing.compute_s, 0.0)
        return outputs

    def close(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for model in self.registry.all_models():
            self.detach(model, max(deadline - time.monotonic(), 0.0))


@contextlib.contextmanager
def _batcher_outcomes():
    """The batcher's outcomes as RequestErrors."""
    try:
        yield
    except concurrent.futures.TimeoutError:
        raise RequestError(Code.DEADLINE_EXCEEDED, "deadline exceeded while queued for inference") from None
    except concurrent.futures.CancelledError:
        raise RequestError(Code.CANCELLED, "request cancelled") from None

