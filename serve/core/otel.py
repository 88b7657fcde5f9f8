"""The only module that imports opentelemetry (the `trace` extra), loaded by
serve.core.tracing.open_tracing when tracing is on: a tracer provider of its own (the
process's global one is left alone), each ended RequestTrace's spans made from its
timestamps on a thread of the tracer's (off the request's), and sent by a BatchSpanProcessor
over OTLP/HTTP (protobuf).

The SDK's own environment variables apply: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
(the resource; service.name defaults to cnn-zoo), OTEL_TRACES_SAMPLER and its _ARG
(default parentbased_always_on: a request whose traceparent says "not sampled" is not
recorded), OTEL_BSP_* (the batch processor), OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, _HEADERS,
_COMPRESSION and _CERTIFICATE (the exporter).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from urllib.parse import urlsplit

from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from .. import __version__
from .ratelimit import RateLimitedLog
from .tracing import Outcome, RequestTrace, Stages

log = logging.getLogger("serve")
dropped_log = RateLimitedLog(log)  # the tracer far behind: spans dropped
fault_log = RateLimitedLog(log)  # a fault of tracing

SERVICE_NAME = "cnn-zoo"
TRACES_PATH = "/v1/traces"  # OTLP/HTTP's path for spans
CLOSE_TIMEOUT_S = 5.0  # how long the server's stop waits for the last spans to be sent
MAX_PENDING = 2048  # requests whose spans wait to be made (the batch processor's queue holds 2048 spans)
MAKE_DELAY_S = 0.02  # spans are made this long after a request ends, with those of the requests ended meanwhile
# Triton's attribute names for the model (its OpenTelemetry trace mode), so its users'
# queries find ours; the batch size has no Triton name.
MODEL_NAME, MODEL_VERSION, BATCH_SIZE = "triton.model_name", "triton.model_version", "cnn_zoo.batch_size"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP URL spans are POSTed to: the endpoint as given when it has a path
    (Triton's url=, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), else with /v1/traces added (a
    collector's base address, as OTEL_EXPORTER_OTLP_ENDPOINT)."""
    return endpoint if urlsplit(endpoint).path.strip("/") else endpoint.rstrip("/") + TRACES_PATH


def _resource() -> Resource:
    own = Resource.create({"service.name": SERVICE_NAME, "service.version": __version__})
    return own.merge(OTELResourceDetector().detect())  # the environment's service.name and attributes win


class Tracer:
    """Spans for RequestTraces. A request's edge hands its trace over as it ends (`record`,
    a queue put); the tracer's thread makes the spans, the SDK's batch processor sends them.
    close() sends what is left."""

    def __init__(self, otlp_endpoint: str, exporter=None) -> None:
        self.url = "" if exporter is not None else traces_url(otlp_endpoint)
        self.provider = TracerProvider(resource=_resource())
        self.provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=self.url)))
        self._tracer = self.provider.get_tracer("serve", __version__)
        if exporter is None:
            log.info("tracing inference requests: spans go over OTLP/HTTP to %s as service %s", self.url,
                     self.provider.resource.attributes.get("service.name"))
        self._pending: queue.SimpleQueue = queue.SimpleQueue()  # C: a put takes no Python-level lock
        self._maker = threading.Thread(target=self._make_spans, name="trace-spans", daemon=True)
        self._maker.start()

    def begin(self, name: str, attributes: dict[str, object], carrier, start: float, model: str = "") -> RequestTrace:
        """A request's trace, from `start` (perf_counter seconds, as its edge took them), for
        the model it names (the data plane names the version that serves it)."""
        return RequestTrace(self, name, attributes, carrier, start, (model, "") if model else None)

    def record(self, trace: RequestTrace, end: float, outcome: Outcome) -> None:
        """A request that ended at `end`: its spans are made on the tracer's thread. While
        that thread is MAX_PENDING requests behind, a request's spans are dropped (as the
        batch processor drops spans when its queue is full), said in the log."""
        if self._pending.qsize() < MAX_PENDING:
            self._pending.put((trace, end, outcome))
        else:
            dropped_log.warning("tracing: %d requests wait for their spans to be made; the spans of %s were dropped",
                                MAX_PENDING, trace.name)

    def _make_spans(self) -> None:
        while True:
            items = [self._pending.get()]
            # Let the answers of the requests just ended be sent before taking the GIL for
            # their spans, then make all that came meanwhile in one go.
            time.sleep(MAKE_DELAY_S)
            while not self._pending.empty():
                items.append(self._pending.get())
            for item in items:
                if item is None:  # close()
                    return
                if isinstance(item, threading.Event):  # flush(): every request before it is done
                    item.set()
                    continue
                try:
                    self._emit(*item)
                except Exception as e:  # a fault of tracing is logged, and the next request traced
                    fault_log.warning("tracing: the spans of %s were not made: %s: %s", item[0].name,
                                        type(e).__name__, e)

    def _emit(self, trace: RequestTrace, end: float, outcome: Outcome) -> None:
        offset = time.time_ns() - time.perf_counter_ns()  # perf_counter seconds -> epoch ns, once per request

        def ns(t: float) -> int:
            return int(t * 1e9) + offset

        attributes = {**trace.attributes, **outcome.attributes}
        if trace.model is not None:
            attributes[MODEL_NAME] = trace.model[0]
            if trace.model[1]:
                attributes[MODEL_VERSION] = _version(trace.model[1])
        if trace.images is not None:
            attributes[BATCH_SIZE] = trace.images
        span = self._tracer.start_span(trace.name, context=propagate.extract(trace.carrier), kind=SpanKind.SERVER,
                                       attributes=attributes, start_time=ns(trace.start))
        if not span.is_recording():  # not sampled
            return
        if trace.stages is not None:
            parent = set_span_in_context(span)
            for name, (begin, finish) in _stage_times(trace.stages):
                self._tracer.start_span(name, context=parent, start_time=ns(begin)).end(end_time=ns(finish))
        if outcome.exception:  # every failure, the client's mistakes too: what failed, and the message it got
            span.add_event("exception", {"exception.type": outcome.exception, "exception.message": outcome.message},
                           timestamp=ns(end))
        if outcome.fault:
            span.set_status(Status(StatusCode.ERROR, outcome.message))
        span.end(end_time=ns(end))

    def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Make the spans of every request ended so far and export them; True if done in time."""
        made = threading.Event()
        self._pending.put(made)
        return made.wait(timeout_s) and self.provider.force_flush(int(timeout_s * 1000))

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Make and send the spans still pending and stop; never waits much more than
        `timeout_s` for a collector that does not answer (those spans are lost, said in the
        log). True if it finished."""
        def finish() -> None:
            self._pending.put(None)
            self._maker.join()
            self.provider.shutdown()

        finishing = threading.Thread(target=finish, name="trace-shutdown", daemon=True)
        finishing.start()
        finishing.join(timeout_s)
        if finishing.is_alive():
            log.warning("tracing: the last spans were not sent within %.1f s (%s did not answer); left behind",
                        timeout_s, self.url or "the exporter")
            return False
        return True


def _stage_times(stages: Stages) -> tuple[tuple[str, tuple[float, float]], ...]:
    """Each stage's (start, end): the run ends as the answer arrives, the queue is the wait before it."""
    run_start = max(stages.ran - stages.compute_s, stages.decoded)
    return (("decode", (stages.start, stages.decoded)), ("queue", (stages.decoded, run_start)),
            ("inference", (run_start, stages.ran)), ("encode", (stages.ran, stages.done)))


def _version(version: str) -> int | str:
    """An integer as Triton's triton.model_version is, when the version is one (it always is
    in a Triton repository layout)."""
    return int(version) if version.isdigit() else version
