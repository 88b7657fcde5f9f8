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
        self._children: dict[tuple, object] = {}  # (metric, label values) -> its child (labels() is slow)

    def _labelled(self, metric, *labels):
        """`metric.labels(*labels)`, made once: prometheus_client's labels() is slow for a hot
        path (refusals, for one, are counted under the batcher's lock)."""
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[metric, labels] = metric.labels(*labels)
        return child

    def observe_request(self, api: str, method: str, model: str, code: str, seconds: float) -> None:
        self._labelled(self.requests, api, method, model, code).inc()
        self._labelled(self.latency, api, method, model).observe(seconds)

    def observe_admitted(self, call: str) -> None:
        self._labelled(self.admitted, call).inc()

    def observe_refused(self, model: str, reason: str) -> None:
        self._labelled(self.refused, model, reason).inc()

    def observe_undecodable(self, api: str, method: str) -> None:
        self._labelled(self.undecodable, api, method).inc()

    def observe_batch(self, model: str, images: int, seconds: float) -> None:
        self._labelled(self.batch_size, model).observe(images)
        self._labelled(self.inference, model).observe(seconds)
