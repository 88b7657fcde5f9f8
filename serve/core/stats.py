"""Per model version statistics with the meaning of Triton's statistics extension.

Per request (InferStatistics), counted once for each successful inference request:
`queue` (waiting in the batcher's queue, for company or for a run slot, until the run that
answered it began; 0 for a request run at once), `compute_input` (decoding the request's
tensors or images into the model's input), `compute_infer` (the onnxruntime run that
answered it: a batch's whole run for each request in it, as Triton counts it),
`compute_output` (encoding the outputs); `success` is the whole request from the model's
lookup to its encoded answer, so what lies in none of the four (handing the request to
the batcher and back, the metrics and statistics recorded after each run) is what
perf_analyzer reports as "overhead"; `fail` a request that failed after its model was found.
There is no response cache: `cache_hit` and `cache_miss` stay 0.

Per batch size (InferBatchStatistics), counted once per onnxruntime run of that many images:
`compute_input` (gathering the requests' images into one array), `compute_infer` (the run),
`compute_output` (handing each request its slice).

Times are nanoseconds, as Triton's; `last_inference` is milliseconds since the epoch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

REQUEST_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                     "cache_hit", "cache_miss")
BATCH_DURATIONS = ("compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class Duration:
    count: int = 0
    ns: int = 0


@dataclass(frozen=True)
class BatchStatistics:
    batch_size: int
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


@dataclass(frozen=True)
class ModelStatistics:
    """A snapshot of one model version's statistics."""

    name: str
    version: str
    last_inference: int  # ms since the epoch, 0 before the first
    inference_count: int  # images answered (a request of batch N counts N)
    execution_count: int  # onnxruntime runs
    inference_stats: dict[str, Duration]  # REQUEST_DURATIONS -> Duration
    batch_stats: tuple[BatchStatistics, ...]  # by batch size


@dataclass(frozen=True)
class RequestTimes:
    """Seconds one successful request spent in each stage, and in all (at least their sum)."""

    compute_input: float
    queue: float
    compute_infer: float
    compute_output: float
    total: float


def _ns(seconds: float) -> int:
    return max(int(seconds * 1e9), 0)


@dataclass
class StatsCounter:
    """The running counters of one model version; every method takes its lock."""

    requests: dict[str, list[int]] = field(default_factory=lambda: {k: [0, 0] for k in REQUEST_DURATIONS})
    batches: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _add(self, key: str, seconds: float) -> None:
        entry = self.requests[key]
        entry[0] += 1
        entry[1] += _ns(seconds)

    def success(self, images: int, times: RequestTimes) -> None:
        with self.lock:
            self.inference_count += images
            self.last_inference_ms = int(time.time() * 1000)
            self._add("success", times.total)
            for key in ("queue", "compute_input", "compute_infer", "compute_output"):
                self._add(key, getattr(times, key))

    def fail(self, seconds: float) -> None:
        with self.lock:
            self._add("fail", seconds)

    def run(self, images: int, gather_s: float, infer_s: float, split_s: float) -> None:
        """One onnxruntime run of `images` images."""
        with self.lock:
            self.execution_count += 1
            entry = self.batches.get(images)
            if entry is None:
                entry = self.batches[images] = {k: [0, 0] for k in BATCH_DURATIONS}
            for key, seconds in zip(BATCH_DURATIONS, (gather_s, infer_s, split_s)):
                entry[key][0] += 1
                entry[key][1] += _ns(seconds)

    def snapshot(self, name: str, version: str) -> ModelStatistics:
        with self.lock:
            return ModelStatistics(
                name=name, version=version, last_inference=self.last_inference_ms,
                inference_count=self.inference_count, execution_count=self.execution_count,
                inference_stats={k: Duration(*v) for k, v in self.requests.items()},
                batch_stats=tuple(BatchStatistics(size, *(Duration(*entry[k]) for k in BATCH_DURATIONS))
                                  for size, entry in sorted(self.batches.items())))
