"""The playground page (GET /) and what it draws: every convolution and pooling layer's output
for an image (/features), one value of it explained (/explain), and the model's layers at a
glance (/architecture), all computed from the same ONNX file as the answers."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np
from aiohttp import web

from ..core.errors import invalid
from ..core.geometry import Axis
from ..core.records import ExplainRequest, FeaturesRequest, Position
from .blocking import blocking, model_of, plane_of
from .errors import query_int
from .images import preprocessing
from .routes import model_routes, route

STATIC = Path(__file__).resolve().parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _image(request: web.Request) -> bytes:
    body = await request.read()
    if not body:
        raise invalid("request body: empty; expected a PNG or JPEG image")
    return body


async def features(request: web.Request) -> web.Response:
    name, version = model_of(request)
    prepared = preprocessing(request)
    body = await _image(request)
    answer = await blocking(request, plane_of(request).features, FeaturesRequest(name, version, body, prepared))
    return web.json_response({
        "model": answer.model_name, "inverted": answer.inverted, "framed": answer.framed,
        "input": {"shape": list(answer.input.shape), "data": answer.input.ravel().tolist()},
        "layers": [{"name": layer.name, "op": layer.op, "shape": list(layer.array.shape),
                    "data": layer.array.ravel().tolist()} for layer in answer.layers]})


def _required_int(request: web.Request, name: str, what: str) -> int:
    if name not in request.query:
        raise invalid(f"{name}: required, an integer ({what})")
    return query_int(request, name, 0)


def _position(request: web.Request) -> Position:
    layer = request.query.get("layer", "")
    if not layer:
        raise invalid("layer: required, a layer name as /features reports it (or as the page shows it: conv1)")
    return Position(layer, _required_int(request, "channel", "the map's channel; a dense layer's unit"),
                    *(query_int(request, name, 0) if name in request.query else None for name in ("y", "x")))


async def explain(request: web.Request) -> web.Response:
    name, version = model_of(request)
    position = _position(request)
    prepared = preprocessing(request)
    body = await _image(request)
    answer = await blocking(request, plane_of(request).explain, ExplainRequest(name, position, version, body, prepared))
    return web.json_response(plain(answer))


async def architecture(request: web.Request) -> web.Response:
    return web.json_response(plain(await blocking(request, plane_of(request).architecture, *model_of(request))))


def plain(value):
    """A core record as JSON values: fields that are None left out, arrays as nested lists."""
    if isinstance(value, Axis):
        return {**{f.name: getattr(value, f.name) for f in fields(value)}, "f": value.f, "out": value.out,
                "uncovered": value.uncovered, "formula": value.formula()}
    if is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value) if getattr(value, f.name) is not None}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


ROUTES = [route("GET", "/", index, "page"), *model_routes("/features", "POST", features, "features"),
          *model_routes("/explain", "POST", explain, "explain"),
          *model_routes("/architecture", "GET", architecture, "architecture")]
