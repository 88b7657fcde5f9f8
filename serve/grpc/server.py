"""The gRPC front end: our Predictor and KServe's GRPCInferenceService over the data plane,
with the standard health and reflection services. Its port is bound when it is built, so
a port in use fails at start-up; serve.server starts and drains it.

    front, port = create_grpc_front_end(plane, GrpcConfig(port=0), host="127.0.0.1")
    front.start(); ...; front.begin_drain(); front.stop(grace=5.0, margin=1.0)
"""

from __future__ import annotations

import logging
import socket
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from ..config import GrpcConfig
from ..core.calls import CALLS, Call
from ..core.dataplane import DataPlane
from ..gen import grpc_service_pb2 as kpb
from ..gen import predictor_pb2, reflection_v1_pb2
from .admission import Admission
from .handler import call_of
from .kserve import KServeServicer
from .predictor import PredictorServicer
from .services import add_service, refusal_reporter

log = logging.getLogger("serve")

PREDICTOR = predictor_pb2.DESCRIPTOR.services_by_name["Predictor"]
KSERVE = kpb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
REFLECTION_V1ALPHA = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
REFLECTION_V1 = reflection_v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
# The standard services' methods, and the Call each is (ours declare theirs on the servicer).
STANDARD_CALLS = {f"/{HEALTH.full_name}/{m}": CALLS["health"] for m in ("Check", "Watch")}
STANDARD_CALLS.update({f"/{s.full_name}/ServerReflectionInfo": CALLS["reflection"]
                       for s in (REFLECTION_V1ALPHA, REFLECTION_V1)})


def method_calls(servicers: list[tuple[object, object]]) -> dict[str, Call]:
    """Every method path this front end serves -> its Call: the servicers' declared ones and
    the standard services'."""
    calls = dict(STANDARD_CALLS)
    for servicer, service in servicers:
        for method in service.methods:
            declared = call_of(servicer, method.name)
            if declared is not None:
                calls[f"/{service.full_name}/{method.name}"] = declared
    return calls


def _check_free(host: str, port: int, address: str, reuse_port: bool = False) -> None:
    """OSError naming the address if it is taken: asked of the OS first, since grpc core
    logs its own multi-line error before grpcio reports the failure. With `reuse_port`,
    taken means taken by a socket that does not share it (the other workers' do)."""
    if port == 0:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
    except OSError:
        return  # grpc reports an address it cannot resolve itself
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds: TIME_WAIT is no obstacle
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(sockaddr)
        except OSError as e:
            raise OSError(f"cannot bind {address}: {e.strerror or e}") from None


def _credentials(cert: Path, key: Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])


def _bind(server: grpc.Server, host: str, config: GrpcConfig) -> int:
    """The bound port; OSError naming the address when it cannot be bound (grpcio returns 0
    or, in newer releases, raises RuntimeError)."""
    address = f"{host}:{config.port}"
    _check_free(host, config.port, address, config.reuse_port)
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


SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class GrpcFrontEnd:
    name = "grpc"

    def __init__(self, plane: DataPlane, config: GrpcConfig, host: str) -> None:
        self.plane = plane
        self.config = config
        servicers = [(PredictorServicer(plane), PREDICTOR), (KServeServicer(plane), KSERVE)]
        self.calls = method_calls(servicers)
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes),
                   ("grpc.so_reuseport", int(config.reuse_port))]
        pool = futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="grpc")
        self.server = grpc.server(pool, interceptors=[Admission(plane, self.calls, pool)], options=options)
        for servicer, service in servicers:
            add_service(self.server, servicer, service)
        # grpcio's standard services, registered as ours are: a malformed body is
        # INVALID_ARGUMENT, never INTERNAL and a traceback.
        refused = refusal_reporter(plane.metrics, log)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # until start()
        add_service(self.server, self.health, HEALTH, refused=refused)
        services = (PREDICTOR, KSERVE, HEALTH, REFLECTION_V1ALPHA, REFLECTION_V1)
        reflecting = reflection.ReflectionServicer(tuple(s.full_name for s in services))
        add_service(self.server, reflecting, REFLECTION_V1ALPHA, refused=refused)
        # v1's messages are v1alpha's field for field: the same servicer answers both.
        add_service(self.server, reflecting, REFLECTION_V1ALPHA, named_as=REFLECTION_V1, refused=refused)
        self.port = _bind(self.server, host, config)
        self.scheme = "grpcs" if config.tls_cert else "grpc"

    def start(self) -> None:
        self.server.start()
        self.readiness_changed()
        self.plane.registry.subscribe(self._model_changed)  # model control: health follows every change

    def readiness_changed(self) -> None:
        """The whole server's readiness changed (in a worker of several: the supervisor's
        word), or the server starts: health by the rule again."""
        for name in self.plane.registry.models:
            self._model_health(name)
        self._server_health()

    def _model_changed(self, name: str) -> None:
        self._model_health(name)
        self._server_health()

    def _model_health(self, name: str) -> None:
        """Health of model `name`, by the one readiness rule (as ModelReady)."""
        if self.plane.draining.is_set():
            return  # NOT_SERVING for good
        model = self.plane.registry.models.get(name)
        self.health.set(name, SERVING if model is not None and self.plane.readiness.model_ready(model) else NOT_SERVING)

    def _server_health(self) -> None:
        """Health of the server and its services, by the one readiness rule (as ServerReady):
        set even when it serves no model (explicit model control, nothing loaded yet)."""
        if self.plane.draining.is_set():
            return  # NOT_SERVING for good
        ready = SERVING if self.plane.readiness.server_ready() else NOT_SERVING
        for service in ("", PREDICTOR.full_name, KSERVE.full_name):
            self.health.set(service, ready)

    def begin_drain(self) -> None:
        """Health NOT_SERVING at once (the data plane is already draining)."""
        self.health.enter_graceful_shutdown()

    def stop(self, grace: float | None, margin: float) -> bool:
        """Close the listener and give in-flight requests `grace` seconds; True if grpcio
        finished within `margin` seconds more (it can hang: never wait on it for ever)."""
        done = self.server.stop(grace).wait((grace or 0.0) + margin)
        if not done:
            log.warning("gRPC front end: its shutdown did not finish within --grace %.1f s + %.1f s; left "
                        "behind", grace or 0.0, margin)
        return done
