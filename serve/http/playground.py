"""The playground page (GET /) and the feature maps it draws: every convolution and pooling
layer's output for an image, computed from the same ONNX file as the answers."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..core.decode import decode_images
from ..core.errors import invalid
from .blocking import FEATURE_MAPS, blocking, core_of, model_of
from .images import preparer
from .kserve import model_routes

STATIC = Path(__file__).resolve().parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def features(request: web.Request) -> web.Response:
    core = core_of(request)
    model = core.registry.get(*model_of(request))
    model.classifier()
    body = await request.read()
    if not body:
        raise invalid("request body: empty; expected a PNG or JPEG image")
    maps = request.app[FEATURE_MAPS]
    prepare = preparer(request, model)

    def run():
        x = decode_images([body], model, "images", core.limits, core.decode_budget, prepare=prepare)
        return x, maps.compute(model, x)

    x, layers = await blocking(request, run)
    return web.json_response({
        "model": model.name, "inverted": prepare.inverted[0], "framed": prepare.framed[0], "input": {"shape": list(x.shape), "data": x.ravel().tolist()},
        "layers": [{"name": layer.name, "op": layer.op, "shape": list(layer.array.shape),
                    "data": layer.array.ravel().tolist()} for layer in layers]})


ROUTES = [web.get("/", index, name="playground"), *model_routes("/features", "POST", features, "features")]
