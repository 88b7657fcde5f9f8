"""The playground page (GET /) and the feature maps it draws: every convolution and pooling
layer's output for an image, computed from the same ONNX file as the answers."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..core.errors import invalid
from ..core.records import FeaturesRequest
from .blocking import blocking, model_of, plane_of
from .images import preprocessing
from .routes import model_routes, route
from .responses import json_response

STATIC = Path(__file__).resolve().parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def features(request: web.Request) -> web.Response:
    name, version = model_of(request)
    prepared = preprocessing(request)
    body = await request.read()
    if not body:
        raise invalid("request body: empty; expected a PNG or JPEG image")
    answer = await blocking(request, plane_of(request).features, FeaturesRequest(name, version, body, prepared))
    return json_response({
        "model": answer.model_name, "inverted": answer.inverted, "framed": answer.framed,
        "input": {"shape": list(answer.input.shape), "data": answer.input.ravel().tolist()},
        "layers": [{"name": layer.name, "op": layer.op, "shape": list(layer.array.shape),
                    "data": layer.array.ravel().tolist()} for layer in answer.layers]})


ROUTES = [route("GET", "/", index, "page"), *model_routes("/features", "POST", features, "features")]
