"""The aiohttp application: the routes, and one middleware (the edge) that admits each
request as the call it is (serve.core.calls: an inference call is refused once draining
began, and traced when tracing is on: serve.http.tracing), turns every outcome into a status (RequestError and aiohttp's refusals as
{"error": ...}, a bug of ours as 500, logged), counts it in the metrics, and adds CORS
headers for the allowed origins."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor

from aiohttp import web

from ..core import RequestError
from ..core.admission import UNCOUNTED
from ..core.dataplane import DataPlane
from . import images, kserve, playground, tracing
from ..config import HttpConfig
from .blocking import CONFIG, EXECUTOR, PLANE
from .errors import error_response, from_http_exception, from_request_error
from .playground import STATIC
from .routes import call_of_route

log = logging.getLogger("serve")

def _cors_headers(request: web.Request, origins: tuple[str, ...]) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin or not (origin in origins or "*" in origins):
        return {}
    return {"Access-Control-Allow-Origin": "*" if "*" in origins else origin, "Vary": "Origin",
            "Access-Control-Expose-Headers": f"{kserve.PROVIDER_HEADER}, Inference-Header-Content-Length"}


def _preflight(request: web.Request, cors: dict[str, str]) -> web.Response:
    return web.Response(status=204, headers={
        **cors, "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "Content-Type"),
        "Access-Control-Max-Age": "600"})


@web.middleware
async def edge(request: web.Request, handler) -> web.StreamResponse:
    app = request.app
    start = time.perf_counter()
    cors = _cors_headers(request, app[CONFIG].cors_origins)
    trace, failure, message = None, "", ""
    try:
        if request.method == "OPTIONS" and cors and "Access-Control-Request-Method" in request.headers:
            response = _preflight(request, cors)
        else:
            call = call_of_route(request.match_info.route.name)
            # An inference call is refused (503) once draining began; readiness and metadata
            # keep answering, as over gRPC.
            ticket = UNCOUNTED if call is None else app[PLANE].admit(call)
            try:
                if call is not None and call.inference and app[PLANE].tracing is not None:
                    trace = tracing.begin(app[PLANE].tracing, request, start)
                response = await handler(request)
            finally:  # answered, failed or cancelled (the client went away): a drain waits no more for it
                ticket.end()
    except RequestError as e:
        failure, message = e.code.name, e.message
        response = from_request_error(e)
    except web.HTTPException as e:
        failure, message = type(e).__name__, e.text or e.reason
        response = from_http_exception(e, request)
    except Exception as e:  # a bug of ours, never the client's mistake
        log.exception("HTTP %s %s failed", request.method, request.path)
        failure, message = type(e).__name__, f"internal error: {type(e).__name__}"
        response = error_response(500, message)
    if not response.prepared:
        response.headers.update(cors)
    route = request.match_info.route.name or "(none)"
    model = request.match_info.get("model", "")
    plane = app[PLANE]
    plane.metrics.observe_request("http", route, plane.registry.metric_label(model) if model else "",
                                  str(response.status), time.perf_counter() - start)
    if trace is not None:
        tracing.end(trace, response.status, failure, message)
    return response


def build_app(plane: DataPlane, executor: Executor, config: HttpConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_body, middlewares=[edge])
    app[PLANE] = plane
    app[EXECUTOR] = executor
    app[CONFIG] = config
    app.add_routes(kserve.ROUTES + images.ROUTES + playground.ROUTES)
    app.router.add_static("/static/", STATIC, name="page:static")
    return app
