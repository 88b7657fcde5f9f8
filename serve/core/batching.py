"""Dynamic batching, leader/follower style: no batching thread of its own.

Concurrent requests for one model queue their images. The request thread that finds no
run in progress becomes the leader: it takes requests from the head of the queue, up to
`max_batch` images, runs them as one onnxruntime call, hands every follower its slice,
and, if requests are still queued, makes the owner of the oldest one the next leader.
So a lone request runs in its own thread at once, and a request that waited costs one
wake-up (the one that brings its answer), never a hand-off to a worker and back.
A request of max_batch images or more has nothing to wait for: it runs at once, in its
own thread and in chunks of max_batch, beside the batch in progress (onnxruntime
sessions take concurrent runs), as long as fewer such runs than cores are under way.

The wait for company is adaptive: a batch waits (up to `delay_s`) only while a request
announced by `expecting` is still being decoded, and only until it arrives; with every
client's request already queued, or a lone client, there is nothing to wait for.
Requests whose client has gone (deadline or cancellation) are dropped before they cost
anything, without disturbing the others in the batch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
import time
from typing import Callable

import numpy as np

from .errors import too_busy, unavailable

RunFn = Callable[[np.ndarray], np.ndarray]
# Called after each onnxruntime run with (images in the batch, seconds gathering the
# requests' images into one array, seconds of the run, seconds handing out the slices).
BatchHook = Callable[[int, float, float, float], None]


class RunTiming:
    """Filled in for a caller of `infer`: seconds of the onnxruntime run(s) that answered it,
    and seconds it waited in the queue before its run began (0 for one run at once)."""

    __slots__ = ("compute_s", "queue_s")

    def __init__(self) -> None:
        self.compute_s = 0.0
        self.queue_s = 0.0


class _Request:
    """One queued request: its images, and its answer once there is one."""

    __slots__ = ("x", "is_active", "result", "error", "lead", "event", "compute_s", "queued_at", "queue_s")

    def __init__(self, x: np.ndarray, is_active: Callable[[], bool]) -> None:
        self.x = x
        self.is_active = is_active
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.lead = False  # this request's thread has been made the leader
        self.event = threading.Event()  # set when answered, failed, or made leader
        self.compute_s = 0.0  # the run that answered it
        self.queued_at = time.perf_counter()
        self.queue_s = 0.0  # from queued_at to the start of the run that answered it

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def output(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return self.result


class Announcement:
    """A request being decoded: while it is, a gathering batch may wait for it. Entering
    the `with` block refuses it at once, before any decoding, when the queue is already
    full (the check is made again when it arrives); leaving it, or passing it to `infer`,
    marks it arrived."""

    __slots__ = ("batcher", "pending")

    def __init__(self, batcher: "Batcher") -> None:
        self.batcher = batcher
        self.pending = True

    def __enter__(self) -> "Announcement":
        with self.batcher._lock:
            self.batcher._refuse_if_full()
            self.batcher._expected += 1
        return self

    def __exit__(self, *exc) -> None:
        if self.pending:
            with self.batcher._lock:
                self.batcher._arrived(self)


class Batcher:
    """Coalesces one model's concurrent requests into onnxruntime runs of <= max_batch images."""

    def __init__(self, run: RunFn, max_batch: int, delay_s: float, on_batch: BatchHook | None = None,
                 instances: int = 1, max_queue: int = 0, on_refused: Callable[[], None] | None = None) -> None:
        if max_batch < 1 or instances < 1:
            raise ValueError(f"max_batch and instances must be at least 1, got {max_batch} and {instances}")
        self.run = run
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.instances = instances  # batches run at once, each by its own leader
        self.max_queue = max_queue  # requests that may wait at once (0: no limit); one more is refused
        self.on_batch = on_batch
        self.on_refused = on_refused
        self._lock = threading.Lock()  # guards everything below
        self._company = threading.Condition(self._lock)  # a gathering leader waits on it
        self._idle = threading.Condition(self._lock)  # close() waits on it
        self._queue: collections.deque[_Request] = collections.deque()
        self._leaders = 0  # threads gathering or running a batch, at most `instances`
        self._gathering = 0  # leaders waiting for company
        self._expected = 0  # announced requests still being decoded
        self._running_full = 0  # requests of max_batch images or more, running outside the queue
        self._waiting_full = 0  # those of them waiting for a run slot
        # No more full-size runs at once than cores: more would only wait for the cores while
        # each held its own intermediate tensors in onnxruntime's memory arena.
        self._full_slots = threading.BoundedSemaphore(os.cpu_count() or 1)
        self._closed = False

    def expecting(self) -> Announcement:
        return Announcement(self)

    def _arrived(self, announcement: Announcement | None) -> None:  # under the lock
        if announcement is not None and announcement.pending:
            announcement.pending = False
            self._expected -= 1
            if self._gathering:
                self._company.notify()

    def _admit(self, announcement: Announcement | None) -> None:  # under the lock
        """A request has arrived; refuse it if the batcher is closing."""
        self._arrived(announcement)
        if self._closed:
            raise unavailable("the server is shutting down")

    def _refuse_if_full(self) -> None:  # under the lock
        """A request about to wait: refused at once if the queue already holds max_queue."""
        waiting = len(self._queue) + self._waiting_full
        if self.max_queue and waiting >= self.max_queue:
            if self.on_refused is not None:
                self.on_refused()
            raise too_busy(f"the queue is full: {waiting} requests are waiting for this model "
                           f"(--max-queue-size {self.max_queue}); retry later")

    def infer(self, x: np.ndarray, is_active: Callable[[], bool] = lambda: True, timeout: float | None = None,
              announcement: Announcement | None = None, timing: RunTiming | None = None) -> np.ndarray:
        """The model's output for the batch `x`, run alone or with other requests. The
        caller's deadline bounds its wait in the queue; `timing` learns the run's seconds."""
        if timeout is not None:  # a client may ask for any deadline; threading waits overflow past this
            timeout = min(timeout, threading.TIMEOUT_MAX)
        timing = timing or RunTiming()
        if len(x) >= self.max_batch:
            return self._run_full(x, is_active, timeout, announcement, timing)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._admit(announcement)
            free = self._leaders < self.instances
            alone = free and not self._queue and self._expected == 0
            if not alone:
                if not free:  # it will wait for a run to end
                    self._refuse_if_full()
                request = _Request(x, is_active)
                self._queue.append(request)
                lead = free
                if self._gathering:
                    self._company.notify()
            if free:
                self._leaders += 1
        if alone:  # nothing queued, nothing on its way: run at once, skipping the queue
            try:
                out, timing.compute_s = self._timed_run(x)
                return out
            finally:
                with self._lock:
                    self._hand_over()
        if lead or self._follow(request, deadline):
            self._lead(request)
        timing.compute_s, timing.queue_s = request.compute_s, request.queue_s
        return request.output()

    def _run_full(self, x: np.ndarray, is_active: Callable[[], bool], timeout: float | None,
                  announcement: Announcement | None, timing: RunTiming) -> np.ndarray:
        arrived = time.perf_counter()
        with self._lock:
            self._admit(announcement)
            slot = self._full_slots.acquire(blocking=False)
            if not slot:
                self._refuse_if_full()
                self._waiting_full += 1
            self._running_full += 1
        try:
            if not slot:
                acquired = self._full_slots.acquire(timeout=timeout)
                with self._lock:
                    self._waiting_full -= 1
                if not acquired:
                    raise concurrent.futures.TimeoutError()
            try:
                timing.queue_s = time.perf_counter() - arrived  # waiting for a run slot
                parts = []
                for i in range(0, len(x), self.max_batch):
                    if not is_active():
                        raise concurrent.futures.CancelledError()
                    out, seconds = self._timed_run(x[i : i + self.max_batch])
                    parts.append(out)
                    timing.compute_s += seconds
            finally:
                self._full_slots.release()
        finally:
            with self._lock:
                self._running_full -= 1
                if self._closed:
                    self._idle.notify_all()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        out = self.run(x)
        return out, time.perf_counter() - start

    def _timed_run(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """A run of one request's images alone: nothing to gather or hand out."""
        out, seconds = self._run(x)
        if self.on_batch:
            self.on_batch(len(x), 0.0, seconds, 0.0)
        return out, seconds

    def _follow(self, request: _Request, deadline: float | None) -> bool:
        """Wait for the answer; True when this thread was made the leader instead."""
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        answered = request.event.wait(remaining)
        with self._lock:
            if request.lead:  # lead even past the deadline: the queue behind it needs a leader
                return True  # (lead stays set while it is queued, so no other leader hands it a second lead)
            if not answered and not request.finished:
                if request in self._queue:  # else it is in the batch being run: its answer will be ignored
                    self._queue.remove(request)
                request.error = concurrent.futures.TimeoutError()
        return False

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

    def _gather(self) -> list[_Request]:
        """Requests for one run, from the head of the queue, waiting for company when it pays."""
        with self._lock:
            deadline = time.monotonic() + self.delay_s
            batch: list[_Request] = []
            images = 0
            while True:
                while self._queue and images + len(self._queue[0].x) <= self.max_batch:
                    request = self._queue.popleft()
                    batch.append(request)
                    images += len(request.x)
                remaining = deadline - time.monotonic()
                if self._queue or images >= self.max_batch or self._expected == 0 or remaining <= 0:
                    return batch  # full, or nothing more worth waiting for
                self._gathering += 1
                self._company.wait(remaining)
                self._gathering -= 1

    def _execute(self, batch: list[_Request]) -> None:
        """One onnxruntime run for the batch's live requests, then every owner told."""
        active = [request.is_active() for request in batch]
        live = [request for request, ok in zip(batch, active) if ok]
        out, failure, seconds, gather_s = None, None, 0.0, 0.0
        began = time.perf_counter()
        if live:
            try:
                x = live[0].x if len(live) == 1 else np.concatenate([r.x for r in live])
                gather_s = time.perf_counter() - began
                out, seconds = self._run(x)
            except Exception as e:  # onnxruntime failure: every caller in the batch learns of it
                failure = e
        start = time.perf_counter()
        with self._lock:
            offset = 0
            for request, ok in zip(batch, active):
                if not ok:
                    request.error = concurrent.futures.CancelledError()
                elif failure is not None:
                    request.error = failure
                else:
                    request.result = out[offset : offset + len(request.x)]
                    request.compute_s, request.queue_s = seconds, began - request.queued_at
                    offset += len(request.x)
                request.event.set()
        if out is not None and self.on_batch:
            self.on_batch(len(x), gather_s, seconds, time.perf_counter() - start)

    def _hand_over(self) -> None:  # under the lock
        """Make the owner of the oldest queued request a leader in this one's place, or stand down."""
        for successor in self._queue:
            if not successor.lead:  # one already made leader by another instance does not count twice
                successor.lead = True
                successor.event.set()
                return
        self._leaders -= 1
        if self._closed:  # only close() waits for the leaders to stand down
            self._idle.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new requests and wait (up to `timeout`) for the running and queued ones."""
        with self._lock:
            self._closed = True
            self._idle.wait_for(lambda: not self._leaders and not self._running_full, timeout)
