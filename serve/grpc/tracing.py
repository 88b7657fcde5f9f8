"""The gRPC front end's side of tracing (serve.core.tracing): each inference call's server
span, named and described as OpenTelemetry's RPC semantic conventions say for gRPC,
continuing the traceparent of the call's metadata. The handler wrapper begins and ends it;
the servicer method puts it on the data plane's request (`current()`)."""

from __future__ import annotations

from contextvars import ContextVar
from urllib.parse import unquote

import grpc

from ..core.tracing import Outcome, RequestTrace
from ..gen import grpc_service_pb2, predictor_pb2

# Each API's full service name, as rpc.method and the span's name begin with it.
SERVICES = {"kserve": grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
            "predictor": predictor_pb2.DESCRIPTOR.services_by_name["Predictor"].full_name}
# The codes that are the server's fault (an error status on a server span, in the conventions).
SERVER_FAULTS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
                           grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})
_CURRENT: ContextVar[RequestTrace | None] = ContextVar("trace", default=None)  # the call this thread serves


def rpc_method(api: str, method: str) -> str:
    return f"{SERVICES[api]}/{method}"


def begin(tracer, method: str, context: grpc.ServicerContext, start: float, model: str) -> RequestTrace:
    """The call's trace, current in this thread until end()."""
    attributes = {"rpc.system.name": "grpc", "rpc.method": method, **_peer(context.peer())}
    trace = tracer.begin(method, attributes, dict(context.invocation_metadata()), start, model)
    _CURRENT.set(trace)
    return trace


def end(trace: RequestTrace, code: grpc.StatusCode, message: str) -> None:
    _CURRENT.set(None)
    fault = code in SERVER_FAULTS
    attributes = {"rpc.response.status_code": code.name, **({"error.type": code.name} if fault else {})}
    trace.end(Outcome(attributes, code.name if code is not grpc.StatusCode.OK else "", message, fault))


def current() -> RequestTrace | None:
    """The trace of the call this thread serves (None: tracing is off, or not an inference call)."""
    return _CURRENT.get()


def _peer(peer: str) -> dict[str, object]:
    """network.peer.* from grpc's peer string: ipv4:127.0.0.1:5000, ipv6:[::1]:5000, unix:/path."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return {}
    host, _, port = unquote(address).rpartition(":")
    return {"network.peer.address": host.strip("[]"), "network.type": kind,
            **({"network.peer.port": int(port)} if port.isdigit() else {})}
