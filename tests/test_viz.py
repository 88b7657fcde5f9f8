"""Every picture renders headless, at its size, and is not blank."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zoo.__main__ import main
from zoo.weights import shipped


def assert_picture(path, min_size=(150, 150)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1]
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.std() > 5, f"{path} looks blank"


@pytest.mark.parametrize("model,dataset", sorted(shipped()))
def test_model_pictures(model, dataset, tmp_path, data_dir, capsys):
    assert main(["viz", model, "--dataset", dataset, "--index", "3", "--out", str(tmp_path),
                 "--data-dir", str(data_dir)]) == 0
    folder = tmp_path / f"{model}-{dataset}-test3"
    names = sorted(p.name for p in folder.iterdir())
    assert {"input.png", "filters.png", "probabilities.png"} <= set(names)
    features = [n for n in names if n.startswith("features-")]
    assert len(features) >= 3  # every convolution and pooling layer
    for name in names:
        assert_picture(folder / name, (200, 200) if name != "input.png" else (150, 150))
    assert capsys.readouterr().out.count("wrote ") == len(names)


def test_feature_maps_match_pytorch_and_the_layer_table():
    from export.exporter import to_onnx
    from zoo import get_model
    from zoo.summary import summarize
    from zoo.viz import feature_maps

    net = get_model("lenet5").eval()
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28), dtype=np.float32)
    maps = feature_maps(net, to_onnx(net), x)
    assert [(m.module, m.tensor.shape) for m in maps] == [
        ("conv1", (6, 28, 28)), ("pool1", (6, 14, 14)), ("conv2", (16, 10, 10)), ("pool2", (16, 5, 5))]
    table = {r.name: r.output_shape for r in summarize(net, (1, 28, 28)).rows}
    assert all(table[m.module] == m.tensor.shape for m in maps)
    assert all(m.max_abs_vs_torch < 1e-4 for m in maps)


def test_resnet_feature_maps_carry_the_folded_batch_norm():
    from export.exporter import to_onnx
    from zoo import get_model
    from zoo.viz import feature_maps

    net = get_model("resnet-mini").eval()
    maps = feature_maps(net, to_onnx(net), np.zeros((1, 1, 28, 28), np.float32))
    assert maps[0].module == "stem.1" and maps[0].fused_bn


def test_edges_picture(tmp_path, data_dir, capsys):
    assert main(["viz", "edges", "--index", "0", "--out", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    assert_picture(tmp_path / "edges-test0" / "edges.png", (1000, 800))


def test_edges_from_an_image_file(tmp_path):
    path = tmp_path / "square.png"
    pixels = np.zeros((40, 40), np.uint8)
    pixels[10:30, 10:30] = 255
    Image.fromarray(pixels).save(path)
    assert main(["viz", "edges", "--image", str(path), "--out", str(tmp_path)]) == 0
    assert_picture(tmp_path / "edges-square" / "edges.png", (1000, 800))


def test_edge_filter_sizes_follow_the_formula():
    from export.reference import conv
    from zoo.summary import conv_output_size
    from zoo.viz import EDGE_FILTERS

    x = np.zeros((1, 1, 28, 28), np.float32)
    k = EDGE_FILTERS["Sobel x"][None, None]
    assert conv(x, k, auto_pad="VALID").shape[-1] == conv_output_size(28, 3) == 26
    assert conv(x, k, auto_pad="SAME_UPPER").shape[-1] == conv_output_size(28, 3, p=1) == 28
    assert conv(x, k, auto_pad="VALID", strides=(2, 2)).shape[-1] == conv_output_size(28, 3, s=2) == 13


@pytest.mark.parametrize("argv,message", [
    (["viz", "lenet5"], "give exactly one of --image PATH or --index I"),
    (["viz", "lenet5", "--index", "10000"], "--index 10000 is out of range 0..9999"),
    (["viz", "lenet6", "--index", "1"], "unknown model 'lenet6'"),
    (["viz", "edges", "--image", "/nonexistent.png"], "/nonexistent.png: cannot read as an image"),
])
def test_viz_errors(argv, message, capsys, data_dir):
    assert main(argv + ["--data-dir", str(data_dir)]) == 2
    assert message in capsys.readouterr().err
