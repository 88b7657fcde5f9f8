"""The KServe v2 REST routes (with Triton's binary tensor, classification, model
configuration, statistics and repository extensions): each converts the HTTP request into
the data plane's record, makes one data-plane call, and converts the answer to JSON."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web
from google.protobuf import json_format

from ..core.stats import ModelStatistics
from . import tracing
from .blocking import blocking, client_present, model_of, plane_of
from .routes import model_routes, route
from .tensors import (HEADER_LENGTH, decode_request, encode_response, parse_header, validate_index_request,
                      validate_object)
from .responses import json_response

PROVIDER_HEADER = "x-execution-provider"


def _tensors(specs) -> list[dict]:
    return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]


def statistics_json(stats: ModelStatistics) -> dict:
    """Triton's HTTP statistics: every count and duration a JSON number (protobuf's JSON
    mapping would make the 64-bit ones strings, which Triton's clients misread)."""
    return {"name": stats.name, "version": stats.version, "last_inference": stats.last_inference,
            "inference_count": stats.inference_count, "execution_count": stats.execution_count,
            "inference_stats": {key: asdict(d) for key, d in stats.inference_stats.items()},
            "batch_stats": [asdict(b) for b in stats.batch_stats]}


async def server_metadata(request: web.Request) -> web.Response:
    meta = plane_of(request).server_metadata()
    return json_response({"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)},
                             headers={PROVIDER_HEADER: ",".join(meta.providers)})


async def live(request: web.Request) -> web.Response:
    return json_response({"live": plane_of(request).live()})


async def ready(request: web.Request) -> web.Response:
    ok = plane_of(request).ready()
    return json_response({"ready": ok}, status=200 if ok else 503)


async def model_ready(request: web.Request) -> web.Response:
    name, version = model_of(request)
    ok = plane_of(request).model_ready(name, version)
    return json_response({"name": name, "ready": ok}, status=200 if ok else 503)


async def model_metadata(request: web.Request) -> web.Response:
    meta = plane_of(request).model_metadata(*model_of(request))
    return json_response({"name": meta.name, "versions": list(meta.versions), "platform": meta.platform,
                              "inputs": _tensors(meta.inputs), "outputs": _tensors(meta.outputs)},
                             headers={PROVIDER_HEADER: meta.provider})


async def config(request: web.Request) -> web.Response:
    message = plane_of(request).model_config(*model_of(request))
    return json_response(json_format.MessageToDict(message, preserving_proto_field_name=True))


async def stats(request: web.Request) -> web.Response:
    name, version = model_of(request) if "model" in request.match_info else ("", "")
    return json_response({"model_stats": [statistics_json(s) for s in plane_of(request).statistics(name, version)]})


async def repository_index(request: web.Request) -> web.Response:
    body = await request.read()
    ready_only = parse_header(body, validate_index_request).get("ready") is True if body.strip() else False
    return json_response([{"name": e.name, **{k: v for k, v in (("version", e.version), ("state", e.state),
                                                                  ("reason", e.reason)) if v}}
                          for e in plane_of(request).repository_index(ready_only)])


async def repository_load(request: web.Request) -> web.Response:
    """Triton's POST /v2/repository/models/{m}/load (a JSON body, if any, must be an object)."""
    body = await request.read()
    if body.strip():
        parse_header(body, validate_object)
    await blocking(request, plane_of(request).load_model, request.match_info["model"])
    return json_response({})


async def repository_unload(request: web.Request) -> web.Response:
    body = await request.read()
    if body.strip():
        parse_header(body, validate_object)
    await blocking(request, plane_of(request).unload_model, request.match_info["model"])
    return json_response({})


async def infer(request: web.Request) -> web.Response:
    plane = plane_of(request)
    name, version = model_of(request)
    body = await request.read()
    present = client_present(request)

    def run():
        rest = decode_request(body, request.headers.get(HEADER_LENGTH), name, version, present, tracing.of(request))
        return encode_response(rest, plane.infer(rest.request))

    payload, header_length = await blocking(request, run)
    if header_length is None:
        return web.Response(body=payload, content_type="application/json")
    return web.Response(body=payload, content_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(header_length)})


ROUTES = [
    route("GET", "/v2", server_metadata, "server_metadata"),
    route("GET", "/v2/", server_metadata, "server_metadata", "slash"),  # as the Open Inference Protocol's OpenAPI spells it
    route("GET", "/v2/health/live", live, "server_live"),
    route("GET", "/v2/health/ready", ready, "server_ready"),
    route("GET", "/v2/models/stats", stats, "model_statistics", "all"),
    route("POST", "/v2/repository/index", repository_index, "repository_index"),
    route("POST", "/v2/repository/models/{model}/load", repository_load, "repository_load"),
    route("POST", "/v2/repository/models/{model}/unload", repository_unload, "repository_unload"),
    *model_routes("", "GET", model_metadata, "model_metadata"),
    *model_routes("/ready", "GET", model_ready, "model_ready"),
    *model_routes("/config", "GET", config, "model_config"),
    *model_routes("/stats", "GET", stats, "model_statistics"),
    *model_routes("/infer", "POST", infer, "infer"),
]
