"""What one request, and all requests together, may cost: images per request, and the
memory that decoding images takes (read from each image's header before it is decoded)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .errors import too_large

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_batch: int = 64  # images per coalesced onnxruntime run; 0 turns dynamic batching off
    batch_delay_s: float = 0.002  # how long the first request of a batch waits for company
    max_request_images: int = 1024  # images one request may carry
    instances: int = 1  # batches of one model run at once (Triton's instance_group count)
    # Requests of one model that may wait in its batcher's queue; one more is refused at once
    # (RESOURCE_EXHAUSTED, HTTP 429). 0: no limit (each request's own deadline bounds its wait).
    max_queue_size: int = 0
    # Bytes one request's images may take decoded (width x height x bytes per pixel, from
    # each header, plus the converted copy): 64 MiB holds a 4096 x 2048 RGBA image.
    max_decode_bytes: int = 64 * MIB
    # Bytes all requests together may be decoding at once; a request waits (within its
    # deadline) for room. With the model arenas and 32 handler threads the server stays
    # under 1 GB RSS (bench/decode_memory.py).
    decode_budget_bytes: int = 256 * MIB

    def check(self) -> None:
        """ValueError naming the setting that makes no sense."""
        if self.max_batch < 0 or self.batch_delay_s < 0 or self.max_request_images < 1 or self.instances < 1:
            raise ValueError("--max-batch and --batch-delay-ms must be >= 0, --max-request-images and "
                             "--instances >= 1")
        if self.max_queue_size < 0:
            raise ValueError(f"--max-queue-size {self.max_queue_size}: expected 0 (no limit) or more")
        if not 0 < self.max_decode_bytes <= self.decode_budget_bytes:
            raise ValueError("--max-decode-mib must be > 0 and at most --decode-budget-mib")


class DecodeBudget:
    """A memory budget for decoding, shared by every request: `reserve(n)` holds n bytes
    while a request decodes; a request over the whole budget is refused at once, one that
    finds it spent waits for room until its deadline, then is refused."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.used = 0
        self._room = threading.Condition()

    def reserve(self, nbytes: int, time_left_s: float | None, field: str) -> "_Reservation":
        if nbytes > self.total:
            raise too_large(f"{field}: decoding needs {nbytes / MIB:.1f} MiB, over this server's decoding "
                            f"budget of {self.total / MIB:.0f} MiB")
        if time_left_s is not None:  # a client may ask for any deadline; threading waits overflow past this
            time_left_s = min(time_left_s, threading.TIMEOUT_MAX)
        deadline = None if time_left_s is None else time.monotonic() + time_left_s
        with self._room:
            while self.used + nbytes > self.total:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise too_large(f"{field}: the server's decoding budget ({self.total / MIB:.0f} MiB) stayed "
                                    "spent by other requests until this request's deadline; retry later")
                self._room.wait(remaining)
            self.used += nbytes
        return _Reservation(self, nbytes)

    def _release(self, nbytes: int) -> None:
        with self._room:
            self.used -= nbytes
            self._room.notify_all()


class _Reservation:
    __slots__ = ("budget", "nbytes")

    def __init__(self, budget: DecodeBudget, nbytes: int) -> None:
        self.budget, self.nbytes = budget, nbytes

    def __enter__(self) -> "_Reservation":
        return self

    def __exit__(self, *exc) -> None:
        self.budget._release(self.nbytes)
