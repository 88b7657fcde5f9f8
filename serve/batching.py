"""Dynamic batching, leader/follower style: no batching thread of its own.

Concurrent requests for one model queue their images. The request thread that finds no
run in progress becomes the leader: it takes up to `max_batch` images from the head of
the queue, runs them as one onnxruntime call, hands every follower its slice, and, if
requests are still queued once its own is answered, makes the owner of the oldest one the
next leader. So a lone request runs in its own thread at once, and a request that waited
costs one wake-up (the one that brings its answer), never a hand-off to a worker and back.

The wait for company is adaptive: a batch waits (up to `delay_s`) only while a request
announced by `expecting` is still being decoded, and only until it arrives; with every
client's request already queued, or a lone client, there is nothing to wait for. Requests whose client has gone (deadline or cancellation) are dropped
before they cost anything, without disturbing the others in the batch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from typing import Callable

import numpy as np

from .errors import unavailable

RunFn = Callable[[np.ndarray], np.ndarray]
# Called after each onnxruntime run with (images in the batch, seconds it took).
BatchHook = Callable[[int, float], None]


class _Request:
    """One caller's images, cut into chunks of at most max_batch, and their answers."""

    __slots__ = ("chunks", "is_active", "results", "unanswered", "error", "lead", "event")

    def __init__(self, chunks: list[np.ndarray], is_active: Callable[[], bool]) -> None:
        self.chunks = chunks
        self.is_active = is_active
        self.results: list[np.ndarray | None] = [None] * len(chunks)
        self.unanswered = len(chunks)
        self.error: BaseException | None = None
        self.lead = False  # this request's thread has been made the leader
        self.event = threading.Event()  # set when answered, failed, or made leader

    @property
    def finished(self) -> bool:
        return self.unanswered == 0 or self.error is not None

    def output(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return self.results[0] if len(self.results) == 1 else np.concatenate(self.results)


class Announcement:
    """A request being decoded: while it is, a gathering batch may wait for it. Leaving the
    `with` block, or passing it to `infer`, marks it arrived."""

    __slots__ = ("batcher", "pending")

    def __init__(self, batcher: "Batcher") -> None:
        self.batcher = batcher
        self.pending = True

    def __enter__(self) -> "Announcement":
        with self.batcher._lock:
            self.batcher._expected += 1
        return self

    def __exit__(self, *exc) -> None:
        if self.pending:
            with self.batcher._lock:
                self.batcher._arrived(self)


class Batcher:
    """Coalesces one model's concurrent requests into onnxruntime runs of <= max_batch images."""

    def __init__(self, run: RunFn, max_batch: int, delay_s: float, on_batch: BatchHook | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.run = run
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.on_batch = on_batch
        self._lock = threading.Lock()  # guards everything below
        self._company = threading.Condition(self._lock)  # a gathering leader waits on it
        self._idle = threading.Condition(self._lock)  # close() waits on it
        self._queue: collections.deque[tuple[_Request, int]] = collections.deque()  # (request, chunk index)
        self._leading = False  # a thread is gathering or running a batch; False means the queue is empty
        self._gathering = False  # the leader waits for company
        self._expected = 0  # announced requests still being decoded
        self._closed = False

    def expecting(self) -> Announcement:
        return Announcement(self)

    def _arrived(self, announcement: Announcement | None) -> None:  # under the lock
        if announcement is not None and announcement.pending:
            announcement.pending = False
            self._expected -= 1
            if self._gathering:
                self._company.notify()

    def infer(self, x: np.ndarray, is_active: Callable[[], bool] = lambda: True, timeout: float | None = None,
              announcement: Announcement | None = None) -> np.ndarray:
        """Logits for `x` (N, 1, 28, 28), run alone or with other requests; a request larger
        than max_batch runs as several chunks. The caller's deadline bounds the wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._arrived(announcement)
            if self._closed:
                raise unavailable("the server is shutting down")
            alone = not self._leading and self._expected == 0 and len(x) <= self.max_batch
            if alone:  # nothing queued, nothing on its way: run at once, skipping the queue
                self._leading = True
            else:
                request = self._enqueue(x, is_active)
                lead = not self._leading
                self._leading = True
        if alone:
            try:
                return self._timed_run(x)
            finally:
                with self._lock:
                    self._hand_over()
        if lead or self._follow(request, deadline):
            self._lead(request)
        return request.output()

    def _enqueue(self, x: np.ndarray, is_active: Callable[[], bool]) -> _Request:  # under the lock
        request = _Request([x[i : i + self.max_batch] for i in range(0, len(x), self.max_batch)], is_active)
        self._queue.extend((request, i) for i in range(len(request.chunks)))
        if self._gathering:
            self._company.notify()
        return request

    def _timed_run(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.run(x)
        if self.on_batch:
            self.on_batch(len(x), time.perf_counter() - start)
        return out

    def _follow(self, request: _Request, deadline: float | None) -> bool:
        """Wait for the answer; True when this thread was made the leader instead."""
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        answered = request.event.wait(remaining)
        with self._lock:
            if request.lead:  # lead even past the deadline: the queue behind it needs a leader
                request.lead = False
                return True
            if not answered and not request.finished:
                self._fail(request, concurrent.futures.TimeoutError())
        return False

    def _fail(self, request: _Request, error: BaseException) -> None:  # under the lock
        """Answer `request` with `error`; its chunks still queued will not run."""
        request.error = error
        if any(entry[0] is request for entry in self._queue):
            self._queue = collections.deque(entry for entry in self._queue if entry[0] is not request)
        request.event.set()

    def _lead(self, request: _Request) -> None:
        """Run batches until this request is answered, then pass the lead on."""
        try:
            while True:
                self._execute(self._gather())
                with self._lock:
                    if request.finished:
                        return
        finally:  # also when something unforeseen escapes: the queue must never lose its leader
            with self._lock:
                self._hand_over()

    def _gather(self) -> list[tuple[_Request, int]]:
        """Entries for one run: from the head of the queue, waiting for company when it pays."""
        with self._lock:
            deadline = time.monotonic() + self.delay_s
            batch: list[tuple[_Request, int]] = []
            images = 0
            while True:
                while self._queue and images + len(self._chunk(self._queue[0])) <= self.max_batch:
                    entry = self._queue.popleft()
                    batch.append(entry)
                    images += len(self._chunk(entry))
                remaining = deadline - time.monotonic()
                if self._queue or images >= self.max_batch or self._expected == 0 or remaining <= 0:
                    break  # full, or nothing more worth waiting for
                self._gathering = True
                self._company.wait(remaining)
                self._gathering = False
            return batch

    @staticmethod
    def _chunk(entry: tuple[_Request, int]) -> np.ndarray:
        request, index = entry
        return request.chunks[index]

    def _execute(self, batch: list[tuple[_Request, int]]) -> None:
        """One onnxruntime run for the batch's live entries, then every owner told."""
        live, gone = [], []
        for entry in batch:
            request = entry[0]
            (live if request.error is None and request.is_active() else gone).append(entry)
        out, failure = None, None
        if live:
            chunks = [self._chunk(entry) for entry in live]
            try:
                out = self._timed_run(chunks[0] if len(chunks) == 1 else np.concatenate(chunks))
            except Exception as e:  # onnxruntime failure: every caller in the batch learns of it
                failure = e
        with self._lock:
            for request, _ in gone:
                if request.error is None:
                    self._fail(request, concurrent.futures.CancelledError())
            offset = 0
            for request, index in live:
                if failure is not None:
                    self._fail(request, failure)
                    continue
                size = len(request.chunks[index])
                request.results[index] = out[offset : offset + size]
                offset += size
                request.unanswered -= 1
                if request.unanswered == 0:
                    request.event.set()

    def _hand_over(self) -> None:  # under the lock
        """Make the owner of the oldest queued request the leader, or stand down."""
        if self._queue:
            successor = self._queue[0][0]
            successor.lead = True
            successor.event.set()
        else:
            self._leading = False
            self._idle.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new requests and wait (up to `timeout`) for the queued ones to finish."""
        with self._lock:
            self._closed = True
            self._idle.wait_for(lambda: not self._leading, timeout)
