"""Images for people with curl: POST a PNG or JPEG (raw body, or multipart form fields with
files) to /v2/models/{model}/predict?top_k=3 and get labels and probabilities as JSON, the
same answer as gRPC Predict."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from ..core.errors import invalid
from ..core.preprocess import Preprocessing
from ..core.records import Deadline, PredictRequest
from . import tracing
from .blocking import blocking, client_present, model_of, plane_of
from .errors import query_bool, query_int
from .routes import model_routes
from .responses import json_response


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


def preprocessing(request: web.Request) -> Preprocessing:
    """The preprocessing the query asks for: ?auto_invert=false, ?frame=false turn each off."""
    return Preprocessing(auto_invert=query_bool(request, "auto_invert", True), frame=query_bool(request, "frame", True))


async def predict(request: web.Request) -> web.Response:
    name, version = model_of(request)
    top_k = query_int(request, "top_k", 1)
    prepared = preprocessing(request)
    files = await image_files(request)
    predict_request = PredictRequest(name, version, images=files, top_k=top_k, preprocessing=prepared,
                                     deadline=Deadline(is_active=client_present(request)), trace=tracing.of(request))
    answer = await blocking(request, plane_of(request).predict, predict_request)
    return json_response({
        "model": answer.model_name, "version": answer.model_version, "execution_provider": answer.provider,
        "predictions": [{"top_k": [dataclasses.asdict(s) for s in p.ranked.top_k], "inverted": p.inverted,
                         "framed": p.framed, "probabilities": p.ranked.probabilities, "logits": p.ranked.logits}
                        for p in answer.predictions]})


ROUTES = [*model_routes("/predict", "POST", predict, "predict")]
