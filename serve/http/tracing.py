"""The HTTP front end's side of tracing (serve.core.tracing): each inference request's server
span, named and described as OpenTelemetry's HTTP semantic conventions say for a server,
continuing the request's traceparent header. The edge middleware begins and ends it; the
route puts it on the data plane's request (`of(request)`)."""

from __future__ import annotations

from aiohttp import web

from ..core.tracing import Outcome, RequestTrace

TRACE = web.RequestKey("trace", RequestTrace)


def begin(tracer, request: web.Request, start: float) -> RequestTrace:
    route = request.match_info.route.resource.canonical  # /v2/models/{model}/infer
    attributes = {"http.request.method": request.method, "http.route": route, "url.path": request.path,
                  "url.scheme": request.scheme, **_server(request.host),
                  "network.protocol.version": f"{request.version.major}.{request.version.minor}",
                  "client.address": request.remote or ""}
    if "User-Agent" in request.headers:
        attributes["user_agent.original"] = request.headers["User-Agent"]
    trace = tracer.begin(f"{request.method} {route}", attributes, request.headers, start,
                         request.match_info.get("model", ""))
    request[TRACE] = trace
    return trace


def end(trace: RequestTrace, status: int, exception: str, message: str) -> None:
    fault = status >= 500  # a 4xx is the client's: no error status on a server span
    attributes = {"http.response.status_code": status, **({"error.type": str(status)} if fault else {})}
    trace.end(Outcome(attributes, exception, message, fault))


def _server(host: str) -> dict[str, object]:
    """server.address and server.port from the Host header as the client sent it, whatever it
    is (never an error: a malformed one is the client's, and the request is still answered)."""
    name, port = host, ""
    if host.startswith("["):  # [::1]:8000
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    return {"server.address": name, **({"server.port": int(port)} if port.isdigit() and len(port) <= 5 else {})}


def of(request: web.Request) -> RequestTrace | None:
    """The request's trace (None: tracing is off, or not an inference call)."""
    return request.get(TRACE)
