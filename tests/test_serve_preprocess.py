"""Issue 14, item 12: a black-on-white digit, or one in a larger frame, is inverted and
framed as MNIST's digits were, said in the answer (HTTP, gRPC and the client), and either
can be turned off."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from serve import client
from serve.core.preprocess import border_is_light, frame_digit
from serve.gen import predictor_pb2 as pb
from tests.http_serving import running_both
from tests.serving import TIMEOUT, predictor_stub

EXAMPLES = Path(__file__).resolve().parent.parent / "serve" / "examples"


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def paper_seven(size: int = 112) -> bytes:
    """The shipped test 7, black on white, enlarged with a white margin: a drawing app's."""
    seven = ImageOps.invert(Image.open(EXAMPLES / "digit-7-0.png").convert("L")).resize((size, size))
    return png(ImageOps.expand(seven, border=size // 4, fill=255))


def test_border_polarity():
    dark = np.zeros((28, 28), np.uint8)
    dark[10:18, 10:18] = 255
    assert not border_is_light(dark)
    assert border_is_light(255 - dark)


def test_frame_digit_fits_20_box_centred_by_mass():
    field = np.zeros((200, 300), np.uint8)
    field[20:120, 240:260] = 255  # a bar in a corner, 100 tall and 20 wide
    framed = frame_digit(field, (28, 28))
    assert framed.shape == (28, 28) and framed.dtype == np.uint8
    rows, cols = np.flatnonzero(framed.max(axis=1) > 25), np.flatnonzero(framed.max(axis=0) > 25)
    assert 19 <= rows[-1] - rows[0] + 1 <= 21 and cols[-1] - cols[0] + 1 <= 6
    mass = framed.astype(float)
    cy = (mass.sum(axis=1) @ np.arange(28)) / mass.sum()
    cx = (mass.sum(axis=0) @ np.arange(28)) / mass.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def predict_http(port: int, body: bytes, query: str = "") -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/lenet5-mnist/predict?top_k=1{query}",
                                     data=body, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())["predictions"][0]


@pytest.fixture(scope="module")
def server(models_dir):
    with running_both(models_dir) as running:
        yield running


def test_black_on_white_seven_inverted_and_framed_over_http(server):
    answer = predict_http(server[2], paper_seven())
    assert answer["inverted"] and answer["framed"]
    assert answer["top_k"][0]["label"] == "7" and answer["top_k"][0]["probability"] > 0.9
    kept = predict_http(server[2], paper_seven(), "&auto_invert=false")
    assert not kept["inverted"] and kept["top_k"][0]["label"] != "7"
    unframed = predict_http(server[2], paper_seven(), "&frame=false")
    assert unframed["inverted"] and not unframed["framed"]


def test_mnist_sized_image_untouched(server):
    answer = predict_http(server[2], (EXAMPLES / "digit-7-0.png").read_bytes())
    assert not answer["inverted"] and not answer["framed"]


def test_grpc_predict_and_client_say_so(server, tmp_path, capsys):
    with predictor_stub(server[1]) as stub:
        images = pb.EncodedImages(images=[paper_seven()])
        said = stub.Predict(pb.PredictRequest(model="lenet5-mnist", images=images), timeout=TIMEOUT).predictions[0]
        kept = stub.Predict(pb.PredictRequest(model="lenet5-mnist", images=images, keep_polarity=True),
                            timeout=TIMEOUT).predictions[0]
    assert said.inverted and said.framed and said.top_k[0].label == "7"
    assert not kept.inverted
    path = tmp_path / "paper-7.png"
    path.write_bytes(paper_seven())
    assert client.main(["predict", "lenet5", str(path), "--server", f"127.0.0.1:{server[1]}", "--top-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "(inverted: its background is light, MNIST's is dark; cropped and centred by mass" in out
    assert "  7  7" in out
    assert client.main(["predict", "lenet5", str(path), "--server", f"127.0.0.1:{server[1]}", "--keep-polarity"]) == 0
    assert "inverted" not in capsys.readouterr().out
