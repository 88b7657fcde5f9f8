"""A training dry run (tiny subset, one epoch) and everything it writes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from zoo.__main__ import main
from zoo.atomic import atomic_open
from zoo.recipes import TrainConfig
from zoo.records import RECORDS, recipe_for
from zoo.training import augment, train, write_outputs
from zoo.weights import load_pretrained, sha256sum

TINY = TrainConfig(epochs=2, batch_size=32, train_limit=512)


@pytest.fixture(scope="module")
def tiny_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = train("lenet5", "mnist", TINY, data_dir=data_dir, progress=False)
    card = write_outputs(result, "lenet5", "mnist", TINY, out)
    return result, card, out


def test_dry_run_learns_something(tiny_run):
    result, card, _ = tiny_run
    assert len(result.history) == 2
    assert result.history[-1].train_loss < 2.3  # below chance-level cross-entropy, ln 10
    assert result.test_accuracy > 0.5


def test_outputs_are_complete(tiny_run):
    result, card, out = tiny_run
    names = sorted(p.name for p in out.iterdir())
    assert names == ["lenet5-mnist.json", "lenet5-mnist.metrics.csv", "lenet5-mnist.png",
                     "lenet5-mnist.safetensors"]
    on_disk = json.loads((out / "lenet5-mnist.json").read_text())
    assert on_disk == card
    assert card["weights_sha256"] == sha256sum(out / "lenet5-mnist.safetensors")
    assert card["num_params"] == 61_706
    assert card["recipe"]["train_limit"] == 512
    assert set(card["versions"]) >= {"python", "torch", "numpy", "safetensors"}
    rows = list(csv.DictReader((out / "lenet5-mnist.metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(card["test_accuracy"])
    assert (out / "lenet5-mnist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_written_weights_reload_to_the_same_network(tiny_run):
    result, _, out = tiny_run
    net, card = load_pretrained("lenet5", "mnist", directory=out)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(net(x), result.model(x), rtol=0, atol=0)


def test_target_accuracy_stops_early(data_dir):
    cfg = replace(TINY, epochs=3)
    result = train("lenet5", "mnist", cfg, data_dir=data_dir, progress=False, target_accuracy=0.0)
    assert len(result.history) == 1


@pytest.mark.parametrize("name", ["twoblock-cnn", "resnet-mini", "lenet5-classic"])
def test_every_model_trains_a_few_steps(data_dir, name):
    cfg = replace(recipe_for(name, "fashion-mnist"), epochs=1, train_limit=256, batch_size=64)
    result = train(name, "fashion-mnist", cfg, data_dir=data_dir, progress=False)
    assert np.isfinite(result.history[0].train_loss)


def test_cli_train_writes_outputs(data_dir, tmp_path, capsys):
    code = main(["train", "lenet5", "--dataset", "fashion-mnist", "--epochs", "1",
                 "--train-limit", "256", "--out", str(tmp_path), "--no-progress",
                 "--data-dir", str(data_dir)])
    assert code == 0
    assert "test accuracy" in capsys.readouterr().out
    assert (tmp_path / "lenet5-fashion-mnist.safetensors").exists()


def test_augment_identity_when_off():
    x = torch.randn(4, 1, 28, 28)
    same = augment(x, TrainConfig(), background=-1.0, g=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, x, rtol=0, atol=0)


def test_augment_shift_moves_pixels_and_fills_background():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 14, 14] = 1.0
    out = augment(x, TrainConfig(shift=2), background=-1.0, g=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    peaks = [tuple((img[0] == 1.0).nonzero()[0].tolist()) for img in out]
    assert all(12 <= r <= 16 and 12 <= c <= 16 for r, c in peaks)
    assert len(set(peaks)) > 5  # offsets differ between images
    assert (out == -1.0).any()  # shifted-in border carries the background value


def test_augment_flip_mirrors_columns():
    x = torch.zeros(32, 1, 28, 28)
    x[..., 0] = 1.0
    out = augment(x, TrainConfig(hflip=True), background=0.0, g=torch.Generator().manual_seed(0))
    flipped = out[..., -1].amax(dim=(1, 2)) == 1.0
    assert 0 < int(flipped.sum()) < 32


def test_every_shipped_pair_has_a_recipe():
    assert {(m, d) for m, d in RECORDS} == {
        (m, d) for m in ["lenet5", "lenet5-classic", "twoblock-cnn", "resnet-mini"]
        for d in ["mnist", "fashion-mnist"]}


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as f:
            f.write(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.bin"]


def test_progress_bar_shows_images_per_second_once(data_dir, capsys):
    cfg = TrainConfig(epochs=1, batch_size=64, train_limit=256)
    train("lenet5", "mnist", cfg, data_dir=data_dir, progress=True)
    err = capsys.readouterr().err
    epoch_bars = [seg for seg in err.replace("\n", "\r").split("\r") if "epoch 1/1" in seg and "img" in seg]
    assert epoch_bars, err
    final = epoch_bars[-1]
    assert final.count("img/s") == 1 and "test_acc=" in final, final


def test_one_epoch_curve_is_readable(tiny_run):
    from zoo.training import curves_figure
    from zoo.viz import pyplot

    result, _, _ = tiny_run
    fig = curves_figure(result.history[:1], "one epoch")
    ax_loss, ax_acc = fig.axes
    for ax in (ax_loss, ax_acc):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks == [1.0]  # whole epochs only, not 0.96 ... 1.04
        assert all(line.get_marker() == "o" for line in ax.lines)
        assert len(ax.texts) == 2  # each point labelled with its value
    low, high = ax_acc.get_ylim()
    accuracy = 100 * result.history[0].test_accuracy
    assert 0 <= low <= accuracy - 1 and accuracy + 1 <= high <= 100 or high == 100
    assert ax_loss.get_ylim()[0] == 0
    pyplot().close(fig)


def test_a_log_gets_each_epochs_last_line_once(data_dir, tmp_path):
    """Training with its progress bars written to a file, as a log is: every epoch's final
    state (with its test accuracy) appears once, not twice."""
    log = tmp_path / "train.log"
    with log.open("w") as err:
        subprocess.run([sys.executable, "-m", "zoo", "train", "lenet5", "--epochs", "2", "--train-limit", "256",
                        "--batch-size", "64", "--out", str(tmp_path / "run"), "--data-dir", str(data_dir)],
                       stdout=subprocess.DEVNULL, stderr=err, check=True, timeout=600)
    lines = [seg for seg in log.read_text().replace("\n", "\r").split("\r") if seg.strip()]
    finals = [seg for seg in lines if "test_acc=" in seg]
    assert len(finals) == 2 and len(set(finals)) == 2, lines  # one per epoch
    assert [seg.split(":")[0] for seg in finals] == ["lenet5 mnist epoch 1/2", "lenet5 mnist epoch 2/2"]


def test_training_leaves_one_core_to_the_rest_of_the_machine(data_dir, tmp_path):
    """The default thread count (issue 21, item 11): on two cores, one thread, so that another
    busy process does not stall every operation (bench/train_speed.py --threads-study);
    --threads still sets it."""
    import os

    from zoo.training import default_threads

    cores = sorted(os.sched_getaffinity(0))
    assert default_threads() == max(1, len(cores) - 1)
    if len(cores) < 2:
        pytest.skip("needs two cores to pin the run to")
    argv = [sys.executable, "-m", "zoo", "train", "lenet5", "--epochs", "1", "--train-limit", "64",
            "--no-progress", "--out", str(tmp_path), "--data-dir", str(data_dir)]
    for extra, said in (([], ", 1 thread"), (["--threads", "2"], ", 2 threads")):
        result = subprocess.run(argv + extra, capture_output=True, text=True, timeout=600,
                                preexec_fn=lambda: os.sched_setaffinity(0, cores[:2]))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].endswith(said), result.stdout
