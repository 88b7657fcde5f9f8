"""Tracing of inference requests with OpenTelemetry, off unless asked for (--trace-otlp-endpoint).

A front end's edge begins a RequestTrace for each inference call it serves (with the
request's W3C `traceparent`, as headers or metadata carry it) and ends it with the status it
sent; the request's record carries it into the data plane, as it carries its Deadline, and
the data plane hands it the model that served and the timestamps it already takes for the
statistics (serve.core.stats). Nothing is built while the request runs: once it has ended,
the tracer's own thread makes its spans from those timestamps in one go (serve.core.otel),
a server span continuing the incoming trace, with the stages as its children:

    <server span>  (inference.GRPCInferenceService/ModelInfer, POST /v2/models/{model}/infer, ...)
      decode      the request's tensors or images checked and decoded    (Triton: compute_input)
      queue       waiting for a batch run                                (queue)
      inference   the onnxruntime run(s) that answered it                (compute_infer)
      encode      the outputs encoded, ranked or classified              (compute_output)

With tracing off the data plane's record carries None and nothing of this runs; the
opentelemetry packages (the `trace` extra) load only when tracing is on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from .otel import Tracer

EXTRA_HINT = "pip install 'cnn-zoo[trace]' (the opentelemetry SDK and its OTLP exporter)"


class TracingUnavailable(ValueError):
    """Tracing was asked for, but the opentelemetry packages are not installed."""


@dataclass(frozen=True)
class Stages:
    """perf_counter() seconds at the edges of a request's stages in the data plane, the
    seconds of the run(s) that answered it (the inference ends as the answer arrives), and
    the seconds it waited in the batcher's queue (from the end of decoding)."""

    start: float
    decoded: float
    ran: float
    compute_s: float
    done: float
    queue_s: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """How a traced request ended, in its front end's terms: the attributes its convention
    gives the server span as it ends (OpenTelemetry's RPC or HTTP semantic conventions: the
    status, error.type for the server's faults); for a failure, what failed (`exception`: a
    status or exception name) and its `message`; and whether it is the server's fault (an
    error status on the span: the conventions leave a client's mistake unset)."""

    attributes: Mapping[str, object]
    exception: str = ""
    message: str = ""
    fault: bool = False


@dataclass(eq=False)
class RequestTrace:
    """One traced request, from its edge to its answer. The front end fills the first four
    fields; the data plane names the model that served it and its stages."""

    tracer: "Tracer"
    name: str  # the server span's name
    attributes: dict[str, object]  # the front end's request attributes
    carrier: Mapping[str, str]  # headers or metadata: traceparent, tracestate
    start: float  # perf_counter() seconds as the edge received it
    model: tuple[str, str] | None = None  # (name, version) of the version that served it
    images: int | None = None  # images in the request (its batch size)
    stages: Stages | None = None  # None: it failed before it was answered

    def served_by(self, name: str, version: str) -> None:
        self.model = (name, version)

    def answered(self, images: int, stages: Stages) -> None:
        self.images, self.stages = images, stages

    def end(self, outcome: Outcome) -> None:
        """Hand it to the tracer, whose thread makes its spans: none are made on the
        request's thread, which goes on to send its answer."""
        self.tracer.record(self, time.perf_counter(), outcome)


def open_tracing(otlp_endpoint: str, exporter=None) -> "Tracer":
    """A Tracer exporting over OTLP/HTTP to `otlp_endpoint` (or to `exporter`, an SDK
    SpanExporter of one's own); TracingUnavailable without the trace extra."""
    return require_tracing()(otlp_endpoint, exporter)


def require_tracing() -> type["Tracer"]:
    """The Tracer class; TracingUnavailable without the trace extra (the command line asks
    before it starts worker processes)."""
    try:
        from .otel import Tracer
    except ImportError as e:
        raise TracingUnavailable(f"tracing needs the trace extra: {EXTRA_HINT}; {e}") from None
    return Tracer
