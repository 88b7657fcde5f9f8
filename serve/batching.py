"""Dynamic batching: concurrent requests for one model are coalesced into one
onnxruntime call of at most `max_batch` images, gathered for at most `delay_s`, then
split back. The wait is adaptive: while requests come one at a time (the last batch held
one and nothing else is queued) a request runs at once, so batching adds no latency at
low load; once they overlap, the worker waits up to `delay_s` to fill each batch, but only
while a request it was told of (`expecting`) is still being decoded: with every client's
request already in the batch there is nothing to wait for. When the
model is idle and nothing is queued, a caller runs its request in its own thread, sparing
the hand-off to the worker (two thread switches) that a lone request gains nothing from.
Requests whose client has gone (deadline or cancellation) are dropped before
they cost anything, without disturbing the others in the batch.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import unavailable

RunFn = Callable[[np.ndarray], np.ndarray]
# Called after each onnxruntime run with (images in the batch, seconds it took).
BatchHook = Callable[[int, float], None]


@dataclass
class _Item:
    x: np.ndarray
    is_active: Callable[[], bool]
    future: Future = field(default_factory=Future)


class Batcher:
    """One worker thread per model that owns its onnxruntime calls."""

    def __init__(self, run: RunFn, max_batch: int, delay_s: float, name: str = "",
                 on_batch: BatchHook | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.run = run
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.on_batch = on_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._pending: _Item | None = None  # an item that did not fit the last batch
        self._last_batch_items = 1
        self._run_lock = threading.Lock()  # one onnxruntime run at a time, inline or batched
        self._expected = 0  # requests announced by `expecting` that have not arrived yet
        self._count_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def expecting(self):
        """Announce a request that is being decoded; `infer` (or leaving) marks it arrived."""
        token = [True]
        with self._count_lock:
            self._expected += 1
        try:
            yield token
        finally:
            self._arrive(token)

    def _arrive(self, token: list[bool] | None) -> None:
        if token and token[0]:
            token[0] = False
            with self._count_lock:
                self._expected -= 1

    def submit(self, x: np.ndarray, is_active: Callable[[], bool] = lambda: True) -> list[Future]:
        """Queue `x` (N, 1, 28, 28); a request larger than max_batch is split into chunks."""
        if self._closed:
            raise unavailable("the server is shutting down")
        items = [_Item(x[i : i + self.max_batch], is_active) for i in range(0, len(x), self.max_batch)]
        for item in items:
            self._queue.put(item)
        return [item.future for item in items]

    def infer(self, x: np.ndarray, is_active: Callable[[], bool], timeout: float | None,
              token: list[bool] | None = None) -> np.ndarray:
        """Submit and wait; the caller's deadline bounds the wait."""
        self._arrive(token)
        if len(x) <= self.max_batch and self._queue.empty() and self._run_lock.acquire(blocking=False):
            try:  # idle: run inline
                if self._closed:
                    raise unavailable("the server is shutting down")
                self._last_batch_items = 1
                return self._timed_run(x)
            finally:
                self._run_lock.release()
        futures = self.submit(x, is_active)
        deadline = None if timeout is None else time.monotonic() + timeout
        parts = []
        try:
            for f in futures:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                parts.append(f.result(remaining))
        except BaseException:
            for f in futures:  # whatever has not started yet will not run
                f.cancel()
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _timed_run(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.run(x)
        if self.on_batch:
            self.on_batch(len(x), time.perf_counter() - start)
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then stop the worker."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _next(self, timeout: float | None) -> _Item | None:
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        return self._queue.get(timeout=timeout)

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """Items for one run, starting with `first`; the bool says a stop was requested."""
        batch, images = [first], len(first.x)
        concurrent = self._last_batch_items > 1 or self._pending is not None or not self._queue.empty()
        deadline = time.monotonic() + (self.delay_s if concurrent else 0.0)
        while images < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                if self._pending is not None or not self._queue.empty():
                    item = self._next(0)
                elif remaining > 0 and self._expected > 0:
                    item = self._queue.get(timeout=min(remaining, 0.0005))  # look again soon
                else:
                    break
            except queue.Empty:
                continue
            if item is None:
                return batch, True
            if images + len(item.x) > self.max_batch:
                self._pending = item  # keep it for the next run: batches never exceed the limit
                break
            batch.append(item)
            images += len(item.x)
        self._last_batch_items = len(batch)
        return batch, False

    def _loop(self) -> None:
        stop = False
        while not stop or self._pending is not None:
            try:
                first = self._next(None if not stop else 0)
            except queue.Empty:
                break
            if first is None:
                stop = True
                continue
            batch, stop_now = self._gather(first)
            stop = stop or stop_now
            with self._run_lock:
                self._run(batch)
        while not self._queue.empty():  # anything submitted during the stop race
            item = self._queue.get_nowait()
            if item is not None:
                item.future.set_exception(unavailable("the server is shutting down"))

    def _run(self, batch: list[_Item]) -> None:
        live = []
        for item in batch:
            if item.is_active() and item.future.set_running_or_notify_cancel():
                live.append(item)
            elif not item.future.done():
                item.future.cancel()
        if not live:
            return
        try:
            out = self._timed_run(np.concatenate([item.x for item in live]) if len(live) > 1 else live[0].x)
        except Exception as e:  # onnxruntime failure: every caller learns of it
            for item in live:
                item.future.set_exception(e)
            return
        offset = 0
        for item in live:
            item.future.set_result(out[offset : offset + len(item.x)])
            offset += len(item.x)
