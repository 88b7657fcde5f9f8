"""Prometheus metrics, per server instance (its own registry), served on --metrics-port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class MetricsEndpoint:
    """/metrics over HTTP for the subclass's `registry` (one server's, or a supervisor's sum
    over its workers)."""

    registry: CollectorRegistry
    _http = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose /metrics over HTTP; returns the bound port (port 0 picks a free one)."""
        try:
            self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise OSError(f"cannot bind the metrics endpoint {host}:{port} (--metrics-port): "
                          f"{e.strerror or e}") from None
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class Metrics(MetricsEndpoint):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "zoo_requests", "gRPC requests by API, method, model and status code",
            ["api", "method", "model", "code"], registry=self.registry)
        self.latency = Histogram(
            "zoo_request_latency_seconds", "Request latency in seconds",
            ["api", "method", "model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram(
            "zoo_batch_size_images", "Images per onnxruntime run (after dynamic batching)",
            ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.inference = Histogram(
            "zoo_inference_seconds", "Seconds per onnxruntime run",
            ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.undecodable = Counter(
            "zoo_undecodable_requests", "Requests whose body did not parse as the method's message",
            ["api", "method"], registry=self.registry)
        self.admitted = Counter(
            "zoo_requests_admitted", "Inference requests taken in as they arrived, before any drain began: "
            "each runs to the end", ["call"], registry=self.registry)
        self.refused = Counter(
            "zoo_requests_refused", "Inference requests refused at once because the server was busy, by reason "
            "(queue_full: --max-queue-size requests were already waiting)", ["model", "reason"],
            registry=self.registry)
        self._children: dict[tuple, tuple] = {}  # label values -> metric children (labels() is slow)

    def _child(self, *key):
        children = self._children.get(key)
        if children is None:
            if key[0] == "batch":
                children = (self.batch_size.labels(key[1]), self.inference.labels(key[1]))
            elif key[0] == "admitted":
                children = (self.admitted.labels(key[1]),)
            elif key[0] == "refused":  # counted under the batcher's lock: a burst of refusals is fast
                children = (self.refused.labels(key[1], key[2]),)
            else:
                api, method, model, code = key
                children = (self.requests.labels(api, method, model, code), self.latency.labels(api, method, model))
            self._children[key] = children
        return children

    def observe_request(self, api: str, method: str, model: str, code: str, seconds: float) -> None:
        count, latency = self._child(api, method, model, code)
        count.inc()
        latency.observe(seconds)

    def observe_admitted(self, call: str) -> None:
        self._child("admitted", call)[0].inc()

    def observe_refused(self, model: str, reason: str) -> None:
        self._child("refused", model, reason)[0].inc()

    def observe_undecodable(self, api: str, method: str) -> None:
        self.undecodable.labels(api, method).inc()

    def observe_batch(self, model: str, images: int, seconds: float) -> None:
        size, duration = self._child("batch", model)
        size.observe(images)
        duration.observe(seconds)
