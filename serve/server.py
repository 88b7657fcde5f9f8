"""The composition root: one ServeConfig in, the whole server out. It checks the config
once, before any model loads, builds the data plane over the models, starts the front ends
it is asked for (gRPC, HTTP or both) and the metrics endpoint, and owns the drain order.

    server = create_server(ServeConfig(ModelsConfig(Path("models")), grpc=GrpcConfig(port=0),
                                       http=HttpConfig(port=0)))
    server.start()
    server.port("grpc"), server.port("http")     # the ports bound
    server.stop(grace=5.0)                       # every front end drains together
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from .config import ModelsConfig, ServeConfig
from .core.control import ControlSettings
from .core.dataplane import DataPlane
from .core.metrics import Metrics
from .core.registry import ModelRegistry
from .core.tracing import open_tracing

log = logging.getLogger("serve")

LAME_DUCK_S = 0.25  # the least time a draining server keeps its listeners open, refusing new requests
STOP_MARGIN_S = 1.0  # how long past --grace a front end's shutdown may take before it is left behind


@dataclass(frozen=True)
class Stopped:
    """How a drain ended: inference requests still running when the grace ran out (cut
    short), and the front ends whose shutdown did not finish in time (left behind)."""

    cut_short: int
    left_behind: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not self.cut_short and not self.left_behind


class ZooServer:
    """The data plane, the front ends serving it, and the metrics endpoint."""

    def __init__(self, plane: DataPlane, front_ends: dict[str, object], metrics_port: int | None) -> None:
        self.plane = plane
        # name -> a front end: port, scheme, start(), readiness_changed(), begin_drain(), stop(grace)
        self.front_ends = front_ends
        self.metrics_port = metrics_port
        self._stopped = threading.Event()

    def port(self, front_end: str) -> int:
        return self.front_ends[front_end].port

    def start(self) -> None:
        for front_end in self.front_ends.values():
            front_end.start()
        self.plane.control.start_polling()

    def set_fleet_ready(self, ready: bool) -> None:
        """In a worker of several: the supervisor's word on the whole server's readiness,
        which this worker's readiness signals follow from now on."""
        fleet = self.plane.readiness.fleet
        if fleet is None or fleet.is_set() == ready:
            return
        fleet.set() if ready else fleet.clear()
        for front_end in self.front_ends.values():
            front_end.readiness_changed()

    def stop(self, grace: float | None = 5.0) -> Stopped:
        """Drain: readiness false and health NOT_SERVING at once, new inference requests
        refused with UNAVAILABLE (503), and those admitted given `grace` seconds to finish
        while every listener stays open (health, readiness and metadata keep answering);
        then the front ends stop, the batchers and the metrics endpoint. It never waits
        much longer than `grace` (STOP_MARGIN_S), whatever a front end's library does, and
        says what it cut short.

        The listeners close only once every admitted inference call has ended (or the grace
        ran out): grpc core closes a connection as soon as its last call ends after its final
        GOAWAY, and a response the client had not read by then would be lost to a TCP
        reset (serve.core.admission). They stay open at least LAME_DUCK_S (a quarter of the
        grace, at most), so a request a client is sending just then gets the clean,
        retryable UNAVAILABLE, where a closing listener would cancel it."""
        if self._stopped.is_set():
            return Stopped(0, ())
        self._stopped.set()
        self.plane.control.stop()  # no model changes while draining
        self.plane.draining.set()
        for front_end in self.front_ends.values():
            front_end.begin_drain()
        if grace:
            began = time.monotonic()
            time.sleep(min(LAME_DUCK_S, grace / 4))
            if waiting := len(self.plane.open_calls):  # as Triton says it waits for in-flight inferences
                log.info("waiting for %d inference request%s to finish before the listeners close",
                         waiting, "" if waiting == 1 else "s")
            self.plane.open_calls.wait_all_ended(max(grace - (time.monotonic() - began), 0.0))
            grace = max(grace - (time.monotonic() - began), 0.0)
        finished: dict[str, bool] = {}

        def stop_one(name: str, front_end) -> None:
            finished[name] = front_end.stop(grace, STOP_MARGIN_S)

        stopping = [threading.Thread(target=stop_one, args=(name, f), name=f"stop-{name}", daemon=True)
                    for name, f in self.front_ends.items()]
        for thread in stopping:
            thread.start()
        deadline = time.monotonic() + (grace or 0.0) + 2 * STOP_MARGIN_S
        for thread in stopping:
            thread.join(max(deadline - time.monotonic(), 0.0))
        stopped = Stopped(self.plane.in_flight(), tuple(n for n in self.front_ends if not finished.get(n)))
        self.plane.close(timeout=0.0 if stopped.cut_short else 5.0)
        self.plane.metrics.close()
        if self.plane.tracing is not None:
            self.plane.tracing.close()  # the spans still queued are sent
        return stopped


def control_settings(models: ModelsConfig) -> ControlSettings:
    return ControlSettings(models.models_dir, models.control_mode, models.poll_secs, models.load_models,
                           models.model_name, models.device, models.ort_threads, models.strict, models.warmup)


def build_plane(config: ServeConfig, metrics: Metrics, tracing=None) -> DataPlane:
    """The data plane over the models the config asks for, loaded and warmed up."""
    models = config.models
    control = control_settings(models)
    plane = DataPlane(ModelRegistry(), models.limits, metrics, strict_readiness=models.strict_readiness,
                      control=control, tracing=tracing)
    plane.control.start_models()
    return plane


def create_server(config: ServeConfig) -> ZooServer:
    """Check the config, load the models and build the server (not started). Raises
    ConfigError for a setting that makes no sense (before anything loads),
    FileNotFoundError for an empty models directory, DeviceError when the device is not
    really available, ModelLoadError with `strict` and a broken model, OSError for a port
    that cannot be bound, TracingUnavailable for tracing without the trace extra."""
    config.check()
    tracing = None if config.trace is None else open_tracing(config.trace.otlp_endpoint, config.trace.exporter)
    metrics = Metrics()
    plane = build_plane(config, metrics, tracing)
    if config.worker is not None:  # one of several: not ready until the supervisor says all are
        plane.readiness.fleet = threading.Event()
        if config.worker.fleet_ready:
            plane.readiness.fleet.set()
    front_ends: dict[str, object] = {}
    try:
        if config.grpc is not None:
            from .grpc.server import GrpcFrontEnd  # grpcio loads only for a server that serves gRPC

            front_ends["grpc"] = GrpcFrontEnd(plane, config.grpc, config.host)
        if config.http is not None:
            from .http.server import HttpFrontEnd  # aiohttp loads only for a server that serves HTTP

            front_ends["http"] = HttpFrontEnd(plane, config.http, config.host)
        metrics_port = metrics.serve(config.metrics_port, config.host) if config.metrics_port is not None else None
    except OSError:
        ZooServer(plane, front_ends, None).stop(grace=0)
        raise
    return ZooServer(plane, front_ends, metrics_port)
