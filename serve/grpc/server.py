"""Building, starting and draining the gRPC server.

    server, port = create_server(models_dir="models", port=0)
    server.start()
    ...
    server.stop(grace=5.0)   # health NOT_SERVING at once, in-flight requests finish
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tritonclient.grpc import service_pb2 as kpb

from ..core import InferenceCore, Limits
from ..core.metrics import Metrics
from ..core.registry import ModelRegistry
from ..gen import predictor_pb2
from .kserve import KServeServicer
from .predictor import PredictorServicer
from .services import add_service

log = logging.getLogger("serve")

LAME_DUCK_S = 0.25  # how long a draining server keeps its listener open, refusing new requests
MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # 1,024 float32 images are 3.2 MB; a message over this is refused
PREDICTOR = predictor_pb2.DESCRIPTOR.services_by_name["Predictor"].full_name
KSERVE = kpb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


@dataclass
class ServerConfig:
    models_dir: Path = Path("models")
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 50051
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    metrics_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    strict: bool = False  # refuse to start when any model fails to load
    # Ready only when every model is (Triton's strict readiness); False: when at least one is.
    strict_readiness: bool = True
    workers: int = 32  # handler threads: the cap on requests served at once
    ort_threads: int = 0  # onnxruntime intra-op threads per model (0 = its default)


class ZooServer:
    """The grpc.Server with the inference core, health and metrics it serves."""

    def __init__(self, grpc_server: grpc.Server, core: InferenceCore, health_servicer, metrics_port) -> None:
        self.grpc_server = grpc_server
        self.core = core
        self.health = health_servicer
        self.metrics_port = metrics_port
        self._stopped = threading.Event()
        # Other front ends on the same core (serve.http), started and drained with this one:
        # anything with start() and stop(grace).
        self.front_ends: dict[str, object] = {}

    def attach(self, name: str, front_end) -> None:
        self.front_ends[name] = front_end

    def start(self) -> None:
        self.grpc_server.start()
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        for name, model in self.core.registry.models.items():
            self.health.set(name, serving if self.core.readiness.model_ready(model) else not_serving)
        ready = serving if self.core.readiness.server_ready() else not_serving  # the one rule, as ServerReady
        for service in ("", PREDICTOR, KSERVE):
            self.health.set(service, ready)
        for front_end in self.front_ends.values():
            front_end.start()

    def stop(self, grace: float | None = 5.0) -> None:
        """Drain: health NOT_SERVING at once, new requests refused, in-flight ones given
        `grace` seconds to finish; then the batchers and the metrics endpoint stop.

        For a moment (a quarter of the grace, at most LAME_DUCK_S) the listener stays open
        while the handlers refuse new requests with UNAVAILABLE: a request that a client is
        sending just then gets that clean, retryable answer, where a closing listener would
        cancel it (CANCELLED)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.core.draining.set()
        if grace:
            lame_duck = min(LAME_DUCK_S, grace / 4)
            time.sleep(lame_duck)
            grace -= lame_duck
        others = [threading.Thread(target=f.stop, args=(grace,), name=f"stop-{n}")
                  for n, f in self.front_ends.items()]
        for thread in others:
            thread.start()
        self.grpc_server.stop(grace).wait()
        for thread in others:
            thread.join()
        self.core.close()
        self.core.metrics.close()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.grpc_server.wait_for_termination(timeout)


def _credentials(cert: Path, key: Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])


def _refuse(request, context):
    context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")


class Admission(grpc.ServerInterceptor):
    """Runs as each request arrives, before it waits for a handler thread: once draining has
    begun, new inference requests are refused; every one that arrived before runs to the
    end (within --grace). Health, readiness (now false), metadata and reflection keep
    answering while the listener is open."""

    REFUSE = grpc.unary_unary_rpc_method_handler(_refuse)

    def __init__(self, core: InferenceCore, methods: list[str]) -> None:
        self.core = core
        self.admitted = {method: core.metrics.admitted.labels(method) for method in methods}

    def intercept_service(self, continuation, handler_call_details):
        admitted = self.admitted.get(handler_call_details.method)
        if admitted is not None:
            if self.core.draining.is_set():
                return self.REFUSE
            admitted.inc()
        return continuation(handler_call_details)


def _check_free(host: str, port: int, address: str) -> None:
    """OSError naming the address if it is taken: asked of the OS first, since grpc core
    logs its own multi-line error before grpcio reports the failure."""
    if port == 0:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
    except OSError:
        return  # grpc reports an address it cannot resolve itself
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds: TIME_WAIT is no obstacle
        try:
            probe.bind(sockaddr)
        except OSError as e:
            raise OSError(f"cannot bind {address}: {e.strerror or e}") from None


def _bind(server: grpc.Server, address: str, config: ServerConfig) -> int:
    """The bound port; OSError naming the address when it cannot be bound (grpcio returns 0
    or, in newer releases, raises RuntimeError)."""
    _check_free(config.host, config.port, address)
    try:
        if config.tls_cert:
            port = server.add_secure_port(address, _credentials(config.tls_cert, config.tls_key))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"cannot bind {address}: the port is in use or the address is not available here")
    return port


def create_server(config: ServerConfig | None = None, **overrides) -> tuple[ZooServer, int]:
    """Load the models and build the server (not started); returns it and the bound port.
    Raises FileNotFoundError for an empty models directory, DeviceError when the device
    is not really available, ModelLoadError with `strict` and a broken model."""
    config = config or ServerConfig(**overrides)
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    registry = ModelRegistry.load_dir(config.models_dir, config.device, strict=config.strict,
                                      threads=config.ort_threads)
    metrics = Metrics()
    config.limits.check()
    core = InferenceCore(registry, config.limits, metrics, strict_readiness=config.strict_readiness)
    admission = Admission(core, [f"/{PREDICTOR}/Predict", f"/{KSERVE}/ModelInfer"])
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="grpc"),
                         interceptors=[admission], options=options)
    add_service(server, PredictorServicer(core), predictor_pb2.DESCRIPTOR.services_by_name["Predictor"])
    add_service(server, KServeServicer(core), kpb.DESCRIPTOR.services_by_name["GRPCInferenceService"])
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # until start()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (PREDICTOR, KSERVE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = _bind(server, f"{config.host}:{config.port}", config)
    metrics_port = metrics.serve(config.metrics_port, config.host) if config.metrics_port is not None else None
    return ZooServer(server, core, health_servicer, metrics_port), port
