"""The one normalization and mean/std parser that the zoo, the export and the server share
(zoo/normalization.py): NumPy only, importable where torch is not."""

from __future__ import annotations

import numpy as np
import pytest

from tests.blocked_imports import run_python
from zoo.datasets import DATASETS
from zoo.normalization import Normalization, channel_values, format_channels, parse_normalization


def test_the_shared_modules_import_and_run_without_torch():
    """What the server and the command lines import before torch: the normalization, the
    dataset and model records, the image preparation; and the server's decoding with them."""
    code = (
        "import sys, numpy as np\n"
        "from zoo.normalization import parse_normalization\n"
        "from zoo.records import RECORDS, INPUT_SHAPE\n"
        "from zoo.preprocess import prepare\n"
        "import serve.core.decode, serve.core.preprocess\n"
        "norm = parse_normalization('[0.5, 0.25, 0.125]', '2', 1 / 255, channels=3)\n"
        "x = norm.apply(np.full((1, 3, 2, 2), 255, np.uint8))\n"
        "print(x.dtype, x.shape, x[0, :, 0, 0].tolist(), INPUT_SHAPE, len(RECORDS))\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')]\n")
    result = run_python(code, ("torch", "onnx", "onnxscript", "safetensors"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["float32", "(1,", "3,", "2,", "2)", "[0.25,", "0.375,", "0.4375]", "(1,",
                                     "28,", "28)", "8"]


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_a_dataset_normalization_is_the_formula(dataset):
    info = DATASETS[dataset]
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    x = info.normalization.apply(pixels)
    assert x.shape == pixels.shape and x.dtype == np.float32
    np.testing.assert_allclose(x, (pixels / 255.0 - info.mean) / info.std, rtol=1e-6, atol=1e-6)
    assert info.normalization.of_zero() == pytest.approx((0 - info.mean) / info.std)


def test_per_channel_values_broadcast_over_the_channel_axis():
    norm = Normalization(1.0, (1.0, 2.0, 3.0), (1.0, 2.0, 4.0))
    x = norm.apply(np.full((2, 3, 1, 1), 5, np.uint8))
    assert x.shape == (2, 3, 1, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, :, 0, 0], [[4.0, 1.5, 0.5]] * 2, rtol=0, atol=0)
    np.testing.assert_allclose(Normalization(1.0, (1.0,), (2.0,)).apply(np.full((1, 3, 1, 1), 5.0)), 2.0)


@pytest.mark.parametrize("given,expected", [
    (0.1307, (0.1307,)), ("0.1307", (0.1307,)), ("[0.485, 0.456, 0.406]", (0.485, 0.456, 0.406)),
    ("0.485,0.456,0.406", (0.485, 0.456, 0.406)), ([1, 2, 3], (1.0, 2.0, 3.0)), (np.float32(0.5), (0.5,)),
])
def test_every_form_a_mean_comes_in(given, expected):
    values = channel_values(given, "mean", 3)
    assert values == pytest.approx(expected) and all(type(v) is float for v in values)


@pytest.mark.parametrize("given,channels,message", [
    ("[0.5, 0.5]", 3, "mean has 2 values for 3 channels; expected 1 or 3"),
    ("abc", None, "mean 'abc' is not a number or a list of numbers"),
    ('["a"]', None, "mean '[\"a\"]' is not a number or a list of numbers"),
    ("[]", None, "mean is empty; expected a number, or one per channel"),
    ("NaN", None, "mean [nan] must be finite"),
])
def test_mean_mistakes_name_the_key_the_count_and_the_channels(given, channels, message):
    with pytest.raises(ValueError) as info:
        channel_values(given, "mean", channels)
    assert str(info.value) == message


def test_a_normalization_needs_a_positive_std_and_scale():
    with pytest.raises(ValueError, match=r"^--std \[0.5, 0.0, 0.5\] must be positive$"):
        parse_normalization("0", "0.5,0,0.5", 1 / 255, 3, keys=("--mean", "--std", "--pixel-scale"))
    with pytest.raises(ValueError, match=r"^pixel_scale \[-1.0\] must be positive$"):
        parse_normalization(0, 1, -1)
    norm = parse_normalization("[0.1, 0.2, 0.3]", 0.5, "0.5", channels=3)
    assert norm == Normalization(0.5, (0.1, 0.2, 0.3), (0.5,))


@pytest.mark.parametrize("values", [(0.1307,), (0.485, 0.456, 0.406)])
def test_metadata_form_reads_back(values):
    text = format_channels(values)
    assert text == ("0.1307" if len(values) == 1 else "[0.485, 0.456, 0.406]")
    assert channel_values(text, "mean", len(values)) == values
