"""Images for people with curl: POST a PNG or JPEG (raw body, or multipart form fields with
files) to /v2/models/{model}/predict?top_k=3 and get labels and probabilities as JSON, the
same answer as gRPC Predict; .../features answers the feature maps the playground draws."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from ..core.decode import decode_images
from ..core.errors import invalid
from ..core.preprocess import Preparer, Preprocessing
from ..core.ranking import check_top_k, rank
from .blocking import blocking, client_present, core_of, model_of
from .errors import query_bool, query_int
from .kserve import model_routes

async def image_files(request: web.Request) -> list[bytes]:
    """The images of a request: every file of a multipart form, or the raw body as one."""
    if request.content_type.startswith("multipart/"):
        try:
            form = await request.post()  # aiohttp's multipart parser, within the body size limit
        except (ValueError, AssertionError, UnicodeDecodeError) as e:  # aiohttp's refusals of a broken form
            raise invalid(f"multipart form: cannot parse it ({str(e)[:120] or type(e).__name__}); expected "
                          "multipart/form-data with a boundary and file fields") from None
        files = [value.file.read() for value in form.values() if isinstance(value, web.FileField)]
        if not files:
            raise invalid("multipart form: no file fields; expected one or more images, e.g. "
                          "curl -F image=@digit.png")
        return files
    body = await request.read()
    if not body:
        raise invalid("request body: empty; expected a PNG or JPEG image (curl --data-binary @digit.png)")
    return [body]


def preparer(request: web.Request, model) -> Preparer:
    """The preprocessing the query asks for: ?auto_invert=false, ?frame=false turn each off."""
    return Preparer(model, Preprocessing(auto_invert=query_bool(request, "auto_invert", True),
                                         frame=query_bool(request, "frame", True)))


async def predict(request: web.Request) -> web.Response:
    core = core_of(request)
    model = core.registry.get(*model_of(request))
    model.classifier()  # 400 (failed precondition) for a model that takes no images
    k = check_top_k(query_int(request, "top_k", 1), model)
    prepare = preparer(request, model)
    files = await image_files(request)
    present = client_present(request)

    def run():
        with core.expecting(model) as announcement:
            x = decode_images(files, model, "images", core.limits, core.decode_budget, prepare=prepare)
            return core.infer(model, x, is_active=present, announcement=announcement)

    logits = await blocking(request, run)
    return web.json_response({
        "model": model.name, "version": model.version, "execution_provider": model.provider,
        "predictions": [{"top_k": [dataclasses.asdict(s) for s in r.top_k], "inverted": inverted, "framed": framed,
                         "probabilities": r.probabilities, "logits": r.logits}
                        for r, inverted, framed in zip(rank(logits, k, model.labels), prepare.inverted,
                                                       prepare.framed)]})


ROUTES = [*model_routes("/predict", "POST", predict, "predict")]
