"""POST .../explain and GET .../architecture over a real server, for every layer of lenet5,
resnet-mini and a 3-channel model that uses strides, dilations, groups, asymmetric and SAME
pads, ceil mode and both average-pooling divisors. Each answer is checked against the model
file read independently: onnx loads it, onnxruntime runs it with every tensor exposed, and
NumPy pads and slices the layer input and reads the weights."""

from __future__ import annotations

import io
import json
import math
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from PIL import Image

from tests.http_serving import running_both
from tests.own_models import spec_cnn, two_input_model
from tests.serving import TIMEOUT

EXAMPLES = Path(__file__).parent.parent / "serve" / "examples"
SHOWN = ("Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")
SEED = 24
# `value` is the very number /features returns (the same session and run): equal to 1e-6.
SAME_RUN = 1e-6
# `sum` is the float64 sum of the float32 products plus the bias; onnxruntime sums in float32
# in its own order: they agree to 1e-5 of the sum of the products' magnitudes (plus 1e-6).
SUM_RTOL, SUM_ATOL = 1e-5, 1e-6


def rgb_png() -> bytes:
    pixels = np.random.default_rng(SEED).integers(0, 256, (30, 24, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


IMAGES = {"lenet5-mnist": (EXAMPLES / "digit-7-0.png").read_bytes(),
          "resnet-mini-mnist": (EXAMPLES / "digit-3-18.png").read_bytes(), "spec-cnn": rgb_png()}


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    from export.exporter import write_unchecked

    root = tmp_path_factory.mktemp("explain")
    shutil.copy(models_dir / "lenet5-mnist.onnx", root)
    write_unchecked("resnet-mini-mnist", root)
    spec_cnn(root / "spec-cnn.onnx")
    two_input_model(root / "pair.onnx")
    return root


@pytest.fixture(scope="module")
def port(repo):
    with running_both(repo) as (_, _, http_port):
        yield http_port


def call(port: int, path: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"Content-Type": "image/png"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Independent:
    """The model file through onnx and onnxruntime, every node output exposed."""

    def __init__(self, path: Path, x: np.ndarray) -> None:
        self.model = onnx.load(str(path))
        graph = self.model.graph
        self.weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.nodes = list(graph.node)
        names = [o for n in graph.node for o in n.output if o and o not in {v.name for v in graph.output}]
        graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
        session = ort.InferenceSession(self.model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed_name = graph.input[0].name
        self.tensors = dict(zip([o.name for o in session.get_outputs()], session.run(None, {feed_name: x})))
        self.tensors[feed_name] = x

    def node(self, name: str) -> onnx.NodeProto:
        return next(n for n in self.nodes if (n.name or n.output[0]) == name)


def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def pads_of(node: onnx.NodeProto, sizes, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """(begin, end) per spatial axis, as the ONNX spec defines pads and auto_pad."""
    a = attrs(node)
    rank = len(sizes)
    auto = a.get("auto_pad", b"NOTSET").decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, (math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n)
                 for n, k, s, d in zip(sizes, kernel, strides, dilations)]
        half = [t // 2 for t in total]
        rest = [t - h for t, h in zip(total, half)]
        return (half, rest) if auto == "SAME_UPPER" else (rest, half)
    if auto == "VALID":
        return [0] * rank, [0] * rank
    pads = list(a.get("pads", [0] * 2 * rank))
    return pads[:rank], pads[rank:]


def numpy_window(stack: np.ndarray, node: onnx.NodeProto, kernel, y: int, x: int):
    """The window of output (y, x) over stack (C, H, W) by np.pad and strided slicing, the
    mask of its cells that are padding (or past the end), and of those past the end padding."""
    a = attrs(node)
    strides = a.get("strides", [1, 1])
    dilations = a.get("dilations", [1, 1])
    begin, end = pads_of(node, stack.shape[1:], kernel, strides, dilations)
    extra = [e + d * k for e, d, k in zip(end, dilations, kernel)]  # room for a ceil-mode window
    widths = ((0, 0), (begin[0], extra[0]), (begin[1], extra[1]))
    padded, ones = np.pad(stack, widths), np.pad(np.ones(stack.shape[1:]), widths[1:])
    declared = np.pad(np.ones([n + b + e for n, b, e in zip(stack.shape[1:], begin, end)]),
                      [(0, room - e) for room, e in zip(extra, end)])
    rows = slice(y * strides[0], y * strides[0] + dilations[0] * (kernel[0] - 1) + 1, dilations[0])
    cols = slice(x * strides[1], x * strides[1] + dilations[1] * (kernel[1] - 1) + 1, dilations[1])
    return padded[:, rows, cols], ones[rows, cols] == 0, declared[rows, cols] == 0


def positions(shape, rng) -> list[tuple[int, int, int]]:
    _, channels, height, width = shape
    seeded = [(int(rng.integers(channels)), int(rng.integers(height)), int(rng.integers(width))) for _ in range(3)]
    return [(0, 0, 0), (channels - 1, height - 1, width - 1), *seeded]


def check_convolution(answer, node, independent, x_in, c, y, x):
    weight = independent.weights[node.input[1]]
    group = attrs(node).get("group", 1)
    per_in, per_out = weight.shape[1], weight.shape[0] // group
    first = (c // per_out) * per_in
    window, padding, _ = numpy_window(x_in[0, first:first + per_in], node, weight.shape[2:], y, x)
    np.testing.assert_allclose(np.array(answer["window"]["values"]), window, rtol=0, atol=SAME_RUN)
    assert np.array(answer["window"]["padding"]).tolist() == padding.tolist()
    assert answer["source"]["channels"] == list(range(first, first + per_in))
    np.testing.assert_array_equal(np.array(answer["kernel"], np.float32), weight[c])
    bias = independent.weights[node.input[2]][c] if len(node.input) > 2 and node.input[2] else None
    assert (answer.get("bias") is None) == (bias is None)
    if bias is not None:
        assert np.float32(answer["bias"]) == bias
    products = np.array(answer["products"])
    np.testing.assert_allclose(products, window.astype(np.float64) * weight[c], rtol=1e-12, atol=0)
    magnitude = np.abs(products).sum() + abs(answer.get("bias") or 0)
    assert abs(answer["sum"] - answer["value"]) <= SUM_RTOL * magnitude + SUM_ATOL
    assert math.isclose(sum(answer["channel_sums"]) + (answer.get("bias") or 0), answer["sum"], abs_tol=1e-9)


def check_pooling(answer, node, x_in, c, y, x):
    op = node.op_type
    kernel = x_in.shape[2:] if op.startswith("Global") else attrs(node)["kernel_shape"]
    window, padding, beyond = numpy_window(x_in[0, c:c + 1], node, kernel, y, x)
    np.testing.assert_allclose(np.array(answer["window"]["values"]), window, rtol=0, atol=SAME_RUN)
    assert np.array(answer["window"]["padding"]).tolist() == padding.tolist()
    inside = window[0][~padding]
    if op.endswith("MaxPool"):
        assert answer["pool"] == "max" and answer["maximum"] == answer["value"] == inside.max()
        row, col = answer["winner"]
        assert window[0, row, col] == inside.max()
    else:
        assert answer["pool"] == "average"
        # the divisor: the cells of the input, or with count_include_pad those of the padding too
        counted = ~beyond if attrs(node).get("count_include_pad", 0) else ~padding
        assert answer["count"] == counted.sum() and math.isclose(answer["sum"], inside.astype(np.float64).sum())
        assert math.isclose(answer["mean"], answer["value"], rel_tol=1e-5, abs_tol=1e-6)


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_layer_explained_as_the_file_computes_it(port, repo, name):
    status, maps = call(port, f"/v2/models/{name}/features", IMAGES[name])
    assert status == 200, maps
    x = np.array(maps["input"]["data"], np.float32).reshape(maps["input"]["shape"])
    independent = Independent(repo / f"{name}.onnx", x)
    rng = np.random.default_rng(SEED)
    explained = 0
    for layer in maps["layers"]:
        node = independent.node(layer["name"])
        x_in = independent.tensors[node.input[0]]
        data = np.array(layer["data"], np.float32).reshape(layer["shape"])
        for c, y, x_ in positions(layer["shape"], rng):
            status, answer = call(port, f"/v2/models/{name}/explain?layer={layer['name']}&channel={c}&y={y}&x={x_}",
                                  IMAGES[name])
            assert status == 200, answer
            assert answer["layer"]["name"] == layer["name"] and answer["output_shape"] == layer["shape"]
            assert abs(answer["value"] - data[0, c, y, x_]) <= SAME_RUN, (layer["name"], c, y, x_)
            np.testing.assert_allclose(np.array(answer["source"]["planes"]),
                                       x_in[0, answer["source"]["channels"][:8]], rtol=0, atol=SAME_RUN)
            if node.op_type == "Conv":
                check_convolution(answer, node, independent, x_in, c, y, x_)
            else:
                check_pooling(answer, node, x_in, c, y, x_)
            follower = answer.get("activation")
            if follower:
                expected = {"Relu": max(answer["value"], 0.0), "Tanh": math.tanh(answer["value"])}[follower["layer"]["op"]]
                assert math.isclose(follower["value"], expected, abs_tol=1e-6)
            explained += 1
    assert explained == 5 * len(maps["layers"]) >= 5 * 4


@pytest.mark.parametrize("name", list(IMAGES))
def test_dense_layers_explained(port, repo, name):
    status, maps = call(port, f"/v2/models/{name}/features", IMAGES[name])
    x = np.array(maps["input"]["data"], np.float32).reshape(maps["input"]["shape"])
    independent = Independent(repo / f"{name}.onnx", x)
    for node in [n for n in independent.nodes if n.op_type == "Gemm"]:
        weight = independent.weights[node.input[1]]
        vector = independent.tensors[node.input[0]][0]
        for unit in (0, weight.shape[0] - 1):
            status, answer = call(port, f"/v2/models/{name}/explain?layer={node.name or node.output[0]}&channel={unit}",
                                  IMAGES[name])
            assert status == 200, answer
            np.testing.assert_array_equal(np.array(answer["kernel"], np.float32), weight[unit])
            np.testing.assert_allclose(np.array(answer["window"]["values"]), vector, rtol=0, atol=SAME_RUN)
            assert abs(answer["value"] - independent.tensors[node.output[0]][0, unit]) <= SAME_RUN
            magnitude = np.abs(answer["products"]).sum() + abs(answer["bias"])
            assert abs(answer["sum"] - answer["value"]) <= SUM_RTOL * magnitude + SUM_ATOL


def test_layers_named_as_a_learner_reads_them(port):
    _, answer = call(port, "/v2/models/lenet5-mnist/explain?layer=pool1&channel=0&y=0&x=0", IMAGES["lenet5-mnist"])
    assert answer["layer"] == {"name": "node_max_pool2d", "title": "pool1", "op": "MaxPool", "kind": "max_pool"}
    assert answer["source"]["layer"]["title"] == "conv1" and answer["source"]["via"] == ["Relu"]
    _, answer = call(port, "/v2/models/lenet5-mnist/explain?layer=conv1&channel=0&y=0&x=0", IMAGES["lenet5-mnist"])
    assert "layer" not in answer["source"] and answer["activation"]["layer"]["title"] == "relu1"
    assert answer["window"]["top"] == answer["window"]["left"] == -2  # pads 2: the window starts in the padding
    _, answer = call(port, "/v2/models/resnet-mini-mnist/explain?layer=block1.conv2&channel=0&y=0&x=0",
                     IMAGES["resnet-mini-mnist"])
    assert "activation" not in answer and [c["op"] for c in answer["consumers"]] == ["Add"]  # the residual
    _, answer = call(port, "/v2/models/spec-cnn/explain?layer=c2&channel=0&y=0&x=0", IMAGES["spec-cnn"])
    assert answer["layer"]["title"] == "conv2" and "bias" not in answer  # unnamed nodes: counted per kind


@pytest.mark.parametrize("query, message", [
    ("layer=nope&channel=0&y=0&x=0", "'nope' is not a layer of lenet5-mnist; expected one of conv1 (node_conv2d), "
                                     "pool1 (node_max_pool2d)"),
    ("layer=relu1&channel=0&y=0&x=0", "relu1 (node_relu) is a Relu; explain covers Conv"),
    ("layer=conv1&channel=6&y=0&x=0", "channel: 6 is out of range for conv1's 6 channels; expected 0 to 5"),
    ("layer=conv1&channel=-1&y=0&x=0", "expected 0 to 5"),
    ("layer=pool2&channel=0&y=5&x=0", "y: 5 is out of range for pool2's 5 x 5 map; expected 0 to 4"),
    ("layer=conv2&channel=0&y=0&x=10", "x: 10 is out of range for conv2's 10 x 10 map; expected 0 to 9"),
    ("layer=conv1&channel=0", "y: required for conv1 (Conv), an integer 0 to 27"),
    ("layer=fc3&channel=10", "channel: 10 is out of range for fc3's 10 units; expected 0 to 9"),
    ("channel=0&y=0&x=0", "layer: required"),
    ("layer=conv1&y=0&x=0", "channel: required"),
    ("layer=conv1&channel=a&y=0&x=0", "channel: 'a' is not an integer"),
])
def test_bad_positions_are_400_naming_the_valid_range(port, query, message):
    status, answer = call(port, f"/v2/models/lenet5-mnist/explain?{query}", IMAGES["lenet5-mnist"])
    assert status == 400 and message in answer["error"], answer


def test_explain_refuses_what_is_not_an_image_model(port):
    assert call(port, "/v2/models/lenet5-mnist/explain?layer=conv1&channel=0&y=0&x=0", b"")[0] == 400
    assert call(port, "/v2/models/nope/explain?layer=conv1&channel=0&y=0&x=0", IMAGES["lenet5-mnist"])[0] == 404
    status, answer = call(port, "/v2/models/pair/explain?layer=conv1&channel=0", IMAGES["lenet5-mnist"])
    assert status == 400 and "not an image classifier" in answer["error"]


def test_architecture_matches_the_zoo_summary(port):
    from zoo import get_model
    from zoo.summary import summarize

    status, arch = call(port, "/v2/models/lenet5-mnist/architecture")
    assert status == 200, arch
    summary = summarize(get_model("lenet5"), (1, 28, 28))
    assert [r["layer"]["title"] for r in arch["rows"]] == [r.name for r in summary.rows]
    assert [tuple(r["output_shape"][1:]) for r in arch["rows"]] == [r.output_shape for r in summary.rows]
    assert [r["params"]["count"] for r in arch["rows"]] == [r.params for r in summary.rows]
    assert arch["total_params"] == arch["declared_params"] == summary.total_params == 61_706
    conv1, pool1, fc1 = (next(r for r in arch["rows"] if r["layer"]["title"] == t) for t in ("conv1", "pool1", "fc1"))
    assert conv1["params"]["formula"] == "(5 × 5 × 1 + 1) × 6 = 156"
    assert [a["formula"] for a in conv1["axes"]] == ["⌊(28 + 2·2 − 5) / 1⌋ + 1 = 28"] * 2
    assert pool1["axes"][0] | {"formula": ""} == {"n": 28, "k": 2, "s": 2, "d": 1, "p_begin": 0, "p_end": 0,
                                                  "ceil": False, "f": 2, "out": 14, "uncovered": 0, "formula": ""}
    assert fc1["params"]["formula"] == "(400 + 1) × 120 = 48,120"
    assert all(r["size_matches"] for r in arch["rows"] if r["axes"])


def test_architecture_of_other_models(port, repo):
    _, arch = call(port, "/v2/models/resnet-mini-mnist/architecture")
    weights = onnx.load(str(repo / "resnet-mini-mnist.onnx")).graph.initializer
    assert arch["total_params"] == sum(int(np.prod(t.dims)) for t in weights if t.data_type == onnx.TensorProto.FLOAT)
    assert arch["declared_params"] == 261_298  # PyTorch's count, before batch norm was folded into the convolutions
    down2 = next(r for r in arch["rows"] if r["layer"]["title"] == "down2.0")
    assert down2["folded"] == "down2.1" and down2["axes"][0]["formula"] == "⌊(14 + 2·1 − 3) / 2⌋ + 1 = 7"
    assert down2["params"]["formula"] == "(3 × 3 × 48 + 1) × 96 = 41,568"
    _, arch = call(port, "/v2/models/spec-cnn/architecture")
    rows = {r["layer"]["title"]: r for r in arch["rows"]}
    assert rows["conv1"]["params"]["formula"] == "(3 × 3 × 3/3 + 1) × 6 = 60"
    assert rows["conv2"]["params"]["formula"] == "2 × 2 × 6/2 × 4 = 48"  # no bias
    assert [(a["p_begin"], a["p_end"]) for a in rows["conv2"]["axes"]] == [(0, 0), (0, 1)]  # SAME_UPPER, 10 x 17
    assert rows["conv1"]["axes"][1]["f"] == 5 and rows["pool1"]["axes"][1]["ceil"]
    assert all(r["size_matches"] for r in arch["rows"] if r["axes"])
    _, arch = call(port, "/v2/models/pair/architecture")  # any served model, images or not
    assert [(r["layer"]["op"], r["output_shape"]) for r in arch["rows"]] == [("Add", [1, 3]), ("Mul", [1])]


def test_the_core_needs_no_onnx_torch_or_front_end():
    from tests.blocked_imports import run_python

    result = run_python("import serve.core.explain, serve.core.architecture, serve.core.layers",
                        ("onnx", "torch", "grpc", "aiohttp", "tritonclient"))
    assert result.returncode == 0, result.stderr
