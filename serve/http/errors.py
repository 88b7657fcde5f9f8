"""The one place where the core's RequestError, and aiohttp's own refusals, become an HTTP
status with the KServe v2 error body {"error": "..."}."""

from __future__ import annotations

from aiohttp import web

from ..core.errors import Code, RequestError, invalid
from .blocking import CONFIG
from .responses import json_response

STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.FAILED_PRECONDITION: 400,
    Code.NOT_FOUND: 404,
    Code.RESOURCE_EXHAUSTED: 413,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
    Code.CANCELLED: 499,  # the client has gone; nobody reads this answer
}


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


def from_request_error(e: RequestError) -> web.Response:
    return error_response(429 if e.busy else STATUS[e.code], e.message)


def from_http_exception(e: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's refusals (no such route, wrong method, body too large) in the same shape."""
    if isinstance(e, web.HTTPRequestEntityTooLarge):
        message = (f"request body exceeds this server's limit of {request.app[CONFIG].max_body:,} bytes; "
                   "send fewer images per request")
    elif isinstance(e, web.HTTPNotFound):
        message = f"no route {request.method} {request.path[:200]}; see the KServe v2 REST routes under /v2"
    elif isinstance(e, web.HTTPMethodNotAllowed):
        message = f"{request.method} is not allowed on {request.path[:200]}; allowed: {', '.join(sorted(e.allowed_methods))}"
    else:
        message = e.text or e.reason
    response = error_response(e.status, message)
    for key in ("Allow",):
        if key in e.headers:
            response.headers[key] = e.headers[key]
    return response


def query_int(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise invalid(f"{name}: {text[:40]!r} is not an integer") from None


def query_bool(request: web.Request, name: str, default: bool) -> bool:
    text = request.query.get(name)
    if text is None:
        return default
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise invalid(f"{name}: {text[:40]!r} is not a boolean; expected true or false")
