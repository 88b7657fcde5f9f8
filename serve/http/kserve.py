"""The KServe v2 REST routes (with Triton's binary tensor, classification, model
configuration, statistics and repository extensions), as thin handlers over the core."""

from __future__ import annotations

from aiohttp import web
from google.protobuf import json_format

from .. import __version__
from ..core.decode import decode_inputs, resolve_outputs
from ..core.kserve import EXTENSIONS, SERVER_NAME, model_config, model_statistics, statistics_models
from .blocking import blocking, client_present, core_of, model_of
from .tensors import (HEADER_LENGTH, decode_request, encode_response, parse_header,
                      validate_index_request)

PROVIDER_HEADER = "x-execution-provider"


def _as_json(message, zeros: bool = False) -> dict:
    """A protobuf record as Triton's HTTP API sends it (`zeros`: with fields at 0, as counters)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=zeros)


async def server_metadata(request: web.Request) -> web.Response:
    core = core_of(request)
    providers = sorted({m.provider for m in core.registry.all_models() if m.ready})
    return web.json_response({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS},
                             headers={PROVIDER_HEADER: ",".join(providers)})


async def live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    ok = core_of(request).readiness.server_ready()
    return web.json_response({"ready": ok}, status=200 if ok else 503)


async def model_ready(request: web.Request) -> web.Response:
    core = core_of(request)
    model = core.registry.lookup(*model_of(request))
    ok = core.readiness.model_ready(model)
    return web.json_response({"name": model.name, "ready": ok}, status=200 if ok else 503)


async def model_metadata(request: web.Request) -> web.Response:
    model = core_of(request).registry.get(*model_of(request))

    def tensors(specs):
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

    return web.json_response({"name": model.name, "versions": [model.version], "platform": "onnxruntime_onnx",
                              "inputs": tensors(model.signature.inputs),
                              "outputs": tensors(model.signature.outputs)},
                             headers={PROVIDER_HEADER: model.provider})


async def config(request: web.Request) -> web.Response:
    core = core_of(request)
    model = core.registry.get(*model_of(request))
    return web.json_response(_as_json(model_config(core, model)))


async def stats(request: web.Request) -> web.Response:
    core = core_of(request)
    name, version = model_of(request) if "model" in request.match_info else ("", "")
    models = statistics_models(core.registry, name, version)
    return web.json_response({"model_stats": [_as_json(model_statistics(core, m), zeros=True) for m in models]})


async def repository_index(request: web.Request) -> web.Response:
    body = await request.read()
    ready_only = parse_header(body, validate_index_request).get("ready") is True if body.strip() else False
    return web.json_response([
        {"name": m.name, "version": m.version, "state": "READY" if m.ready else "UNAVAILABLE",
         **({"reason": m.error} if m.error else {})}
        for m in core_of(request).registry.all_models() if not ready_only or m.ready])


async def infer(request: web.Request) -> web.Response:
    core = core_of(request)
    model = core.registry.get(*model_of(request))
    body = await request.read()
    present = client_present(request)

    def run():
        with core.expecting(model) as announcement:
            parsed = decode_request(body, request.headers.get(HEADER_LENGTH))
            feed = decode_inputs(model, parsed.inputs, core.limits.max_request_images)
            outputs = resolve_outputs(model, parsed.outputs)
            results = core.infer_all(model, feed, time_left_s=parsed.time_left_s, is_active=present,
                                     announcement=announcement)
        return encode_response(parsed, model, outputs, results)

    payload, header_length = await blocking(request, run)
    if header_length is None:
        return web.Response(body=payload, content_type="application/json")
    return web.Response(body=payload, content_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(header_length)})


def model_routes(suffix: str, method: str, handler, name: str) -> list[web.RouteDef]:
    """The route with and without /versions/{version}."""
    return [web.route(method, f"/v2/models/{{model}}{suffix}", handler, name=name),
            web.route(method, f"/v2/models/{{model}}/versions/{{version}}{suffix}", handler, name=f"{name}_version")]


ROUTES = [
    web.get("/v2", server_metadata, name="server_metadata"),
    web.get("/v2/health/live", live, name="live"),
    web.get("/v2/health/ready", ready, name="ready"),
    web.get("/v2/models/stats", stats, name="stats_all"),
    web.post("/v2/repository/index", repository_index, name="repository_index"),
    *model_routes("", "GET", model_metadata, "model_metadata"),
    *model_routes("/ready", "GET", model_ready, "model_ready"),
    *model_routes("/config", "GET", config, "config"),
    *model_routes("/stats", "GET", stats, "stats"),
    *model_routes("/infer", "POST", infer, "infer"),
]
