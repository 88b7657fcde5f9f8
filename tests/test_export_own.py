"""Your own model: weights trained with `python -m zoo train`, and a CNN written here,
through every export check, then through `python -m export verify`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from torch import nn

from export import export_checked
from export.__main__ import main
from export.metadata import KEYS, read_metadata
from export.test_data import read_tensor
from export.verify import verify
from zoo.normalization import channel_values


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """lenet5 after one epoch on 512 images: a real run of the command, far from converged."""
    runs = tmp_path_factory.mktemp("runs")
    subprocess.run([sys.executable, "-m", "zoo", "train", "lenet5", "--epochs", "1", "--train-limit", "512",
                    "--out", str(runs), "--data-dir", str(data_dir), "--no-progress"],
                   check=True, capture_output=True, text=True, timeout=600)
    return runs / "lenet5-mnist.safetensors"


def test_trained_weights_export_under_a_chosen_name(trained, tmp_path, data_dir, capsys):
    card = json.loads(trained.with_suffix(".json").read_text())
    out = tmp_path / "models"
    assert main(["lenet5", "--weights", str(trained), "--name", "my-lenet", "--out", str(out),
                 "--data-dir", str(data_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"my-lenet  (opset 18; your weights {trained})")
    report = json.loads((out / "my-lenet.report.json").read_text())
    assert report["passed"] and report["source"] == "trained"
    assert report["test_set"]["images"] == 10_000
    assert report["test_set"]["accuracy"]["onnxruntime"] == pytest.approx(card["test_accuracy"], abs=2e-4)
    assert report["test_set"]["accuracy"]["onnxruntime"] < 0.99  # really the few-step weights, not the shipped
    meta = read_metadata(onnx.load(out / "my-lenet.onnx"))
    assert set(meta) == set(KEYS) and meta["source"] == "trained"
    assert meta["weights_sha256"] == card["weights_sha256"] and float(meta["test_accuracy"]) == card["test_accuracy"]
    assert sorted(p.name for p in out.iterdir()) == ["my-lenet", "my-lenet.onnx", "my-lenet.report.json"]
    result = verify(out / "my-lenet.onnx", strict=True)
    assert result.passed and len(result.goldens) == 2, result.failures


@pytest.mark.parametrize("argv,message", [
    ([], "would be exported as 'lenet5-mnist', the name of the shipped model; choose a name with --name"),
    (["--name", "lenet5-fashion-mnist"], "the name of the shipped model; choose another --name"),
    (["--name", "x", "--dataset", "fashion-mnist"], "its model card says dataset 'mnist', not 'fashion-mnist'"),
])
def test_trained_weights_never_take_a_shipped_name_silently(trained, tmp_path, capsys, argv, message):
    assert main(["lenet5", "--weights", str(trained), "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []


class TinyResNeXt(nn.Module):
    """3 x 32 x 32 -> 5 classes: a grouped conv, batch norm, a residual add and ReLU6."""

    def __init__(self, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, kernel_size=3, stride=2, padding=1)
        self.stem_act = nn.ReLU6()
        self.grouped = nn.Conv2d(width, width, kernel_size=3, padding=1, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (N, width, 16, 16)
        x = self.stem_act(x)
        y = self.grouped(x)
        y = self.bn(y)
        x = self.act(x + y)
        x = self.pool(x)  # (N, width, 1, 1)
        x = self.flatten(x)  # (N, width)
        return self.head(x)  # (N, classes)


LABELS = ["cat", "dog", "fox", "owl", "yak"]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture
def sample_folder(tmp_path):
    """Twenty RGB images of other sizes, four per class-named subfolder."""
    rng = np.random.default_rng(3)
    for i in range(20):
        folder = tmp_path / "samples" / LABELS[i % 5]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "samples"


def trained_bn_net() -> TinyResNeXt:
    torch.manual_seed(0)
    net = TinyResNeXt()
    with torch.no_grad():  # running statistics that are not the identity, as after training
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_a_cnn_written_here_through_the_api_then_verified(tmp_path, sample_folder):
    out = tmp_path / "models" / "tiny-resnext.onnx"
    result = export_checked(trained_bn_net(), out, input_shape=(3, 32, 32), labels=LABELS, mean=MEAN, std=STD,
                            samples=sample_folder)
    assert result.passed, result.failure
    report = result.report
    assert report["checked_on"] == f"20 images from {sample_folder} in class-named subfolders"
    assert report["test_set"]["images"] == 20 and set(report["test_set"]["top1_agreement"].values()) == {1.0}
    assert "accuracy" in report["test_set"]  # labels from the subfolders, and no floor without a card
    assert {n["op_type"] for n in report["nodes"]} >= {"Conv", "Add", "Clip"}
    assert report["structure"]["inferred_output_shape"] == ["batch", 5]
    proto = onnx.load(out)
    meta = read_metadata(proto)
    assert meta["source"] == "custom" and json.loads(meta["labels"]) == LABELS
    assert json.loads(meta["input_shape"]) == [-1, 3, 32, 32]
    assert list(channel_values(meta["mean"], "mean")) == MEAN and list(channel_values(meta["std"], "std")) == STD
    assert set(meta) <= set(KEYS)
    x = read_tensor(out.with_suffix("") / "test_data_set_0" / "input_0.pb")
    assert x.shape == (8, 3, 32, 32) and x.dtype == np.float32
    verified = verify(out, strict=True)
    assert verified.passed, verified.failures
    assert {g.runtime for g in verified.goldens if g.ok} == {"onnxruntime", "reference"}


def test_random_inputs_when_no_samples_are_given(tmp_path):
    result = export_checked(trained_bn_net(), tmp_path / "t.onnx", input_shape=(3, 32, 32), mean=MEAN, std=STD)
    assert result.passed, result.failure
    assert result.report["checked_on_kind"] == "random"
    assert "random inputs" in result.report["checked_on"] and "accuracy" not in result.report["test_set"]
    assert json.loads(read_metadata(onnx.load(tmp_path / "t.onnx"))["labels"]) == ["0", "1", "2", "3", "4"]


def test_custom_command_line(tmp_path, sample_folder, monkeypatch, capsys):
    """A module named by import path, its weights from a safetensors file, samples from .npy."""
    import safetensors.torch

    (tmp_path / "mynets.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Small(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 4, 3)\n        self.flatten = nn.Flatten()\n"
        "        self.fc = nn.Linear(4 * 10 * 10, 3)\n\n"
        "    def forward(self, x):\n        return self.fc(self.flatten(torch.relu(self.conv(x))))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(1)
    from mynets import Small

    safetensors.torch.save_file(Small().state_dict(), tmp_path / "small.safetensors")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (10, 12, 12), dtype=np.uint8))
    argv = ["custom", "mynets:Small", "--weights", "small.safetensors", "--input-shape", "1,12,12",
            "--labels", "a,b,c", "--mean", "0.5", "--std", "0.25", "--samples", "x.npy", "--out", "out"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "samples     10 raw uint8 inputs from x.npy: top-1 agreement 100%" in printed
    meta = read_metadata(onnx.load(tmp_path / "out" / "small.onnx"))
    assert (meta["mean"], meta["std"], meta["labels"]) == ("0.5", "0.25", '["a", "b", "c"]')
    assert len(meta["weights_sha256"]) == 64
    assert main(argv[:-2] + ["--labels", "a,b", "--out", "out2"]) == 2
    assert "2 labels for a module with 3 outputs" in capsys.readouterr().err

    # Weights of another module name the keys that do not fit (they named none: issue 21, item 13).
    (tmp_path / "other.py").write_text(
        "from torch import nn\n\n\nclass Other(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 8, 3)\n        self.head = nn.Linear(4, 3)\n")
    assert main(["custom", "other:Other", "--weights", "small.safetensors", "--input-shape", "1,12,12",
                 "--out", "out4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: small.safetensors: does not fit other:Other: missing keys head.weight, head.bias; "
                   "unexpected keys fc.bias, fc.weight; other shapes: conv.weight ([4, 1, 3, 3] in the file, "
                   "[8, 1, 3, 3] in the model), conv.bias ([4] in the file, [8] in the model)"], err
    # An input shape the module cannot take is one line too (it was some 60 lines of torch).
    assert main(["custom", "mynets:Small", "--input-shape", "3,12,12", "--out", "out5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the module cannot take inputs of shape (2, 3, 12, 12) "
                                               "(RuntimeError: "), err
    assert err[0].endswith("; check --input-shape (C,H,W of one input)")
    assert not (tmp_path / "out4").exists() and not (tmp_path / "out5").exists()

    # Mistakes in the user's own module are one line each, never a traceback.
    (tmp_path / "broken.py").write_text("def oops(:\n")
    (tmp_path / "needsargs.py").write_text("class Net:\n    def __init__(self, width):\n        pass\n")
    for spec, said in [("broken:Net", "importing 'broken' failed (SyntaxError"),
                       ("needsargs:Net", "needsargs:Net() failed (TypeError"),
                       ("mynets:", "no class named; expected module.path:ClassName")]:
        assert main(["custom", spec, "--input-shape", "1,12,12", "--out", "out3"]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
