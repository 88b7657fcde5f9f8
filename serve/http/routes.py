"""Declaring a route as the call it is (serve.core.calls): its name is the call's name, with
a suffix after ':' for a second path of the same call, so the edge finds every route's Call."""

from __future__ import annotations

from aiohttp import web

from ..core.calls import Call, call


def route(method: str, path: str, handler, call_name: str, variant: str = "") -> web.RouteDef:
    call(call_name)  # KeyError at import for a call nobody declared
    return web.route(method, path, handler, name=f"{call_name}:{variant}" if variant else call_name)


def model_routes(suffix: str, method: str, handler, call_name: str) -> list[web.RouteDef]:
    """The route with and without /versions/{version}."""
    return [route(method, f"/v2/models/{{model}}{suffix}", handler, call_name),
            route(method, f"/v2/models/{{model}}/versions/{{version}}{suffix}", handler, call_name, "version")]


def call_of_route(name: str | None) -> Call | None:
    """The Call a route was declared as; None for a request no route matched (404, 405)."""
    return call(name.partition(":")[0]) if name else None
