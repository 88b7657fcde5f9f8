"""The shipped weights: present for every model and dataset, hash-checked, above their floors."""

from __future__ import annotations

import json
import shutil

import pytest

from zoo import list_models
from zoo.__main__ import main
from zoo.evaluation import evaluate
from zoo.weights import WEIGHTS_DIR, WeightsError, load_pretrained, read_card, shipped

from zoo.records import RECORDS, card_input

FLOORS = {key: record.floor for key, record in RECORDS.items()}


def test_every_model_ships_for_both_datasets():
    assert sorted(shipped()) == sorted(FLOORS)
    assert {m for m, _ in FLOORS} == set(list_models())


@pytest.mark.parametrize("model,dataset", sorted(RECORDS))
def test_every_card_states_what_its_record_says(model, dataset):
    """The shipped card was written from the record when the weights were trained: same
    labels, input and recipe (a record changed since would no longer describe the weights)."""
    from dataclasses import asdict

    record, card = RECORDS[(model, dataset)], read_card(model, dataset)
    assert (card["model"], card["dataset"]) == (record.model, record.dataset)
    assert card["classes"] == list(record.labels)
    assert card["input"] == card_input(record.info)
    assert card["input"]["shape"][1:] == list(record.input_shape)
    assert card["recipe"] == asdict(record.recipe)
    assert card["test_accuracy"] >= record.floor


@pytest.mark.parametrize("model,dataset", sorted(FLOORS))
def test_shipped_weights_reach_their_floor(model, dataset, test_split):
    net, card = load_pretrained(model, dataset)
    report = evaluate(net, test_split(dataset))
    assert report.confusion.sum() == 10_000
    assert report.accuracy >= FLOORS[(model, dataset)]
    # The card's figure was measured the same way when training ended.
    assert report.accuracy == pytest.approx(card["test_accuracy"], abs=2e-4)
    assert card["num_params"] == sum(p.numel() for p in net.parameters())


def test_tampered_weights_are_refused(tmp_path):
    for suffix in (".json", ".safetensors"):
        shutil.copy(WEIGHTS_DIR / f"lenet5-mnist{suffix}", tmp_path)
    path = tmp_path / "lenet5-mnist.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="lenet5-mnist.safetensors: SHA-256 [0-9a-f]+ does not match"):
        load_pretrained("lenet5", "mnist", directory=tmp_path)


def test_missing_and_broken_cards(tmp_path):
    with pytest.raises(WeightsError, match="no model card"):
        read_card("lenet5", "mnist", tmp_path)
    (tmp_path / "lenet5-mnist.json").write_text("{not json")
    with pytest.raises(WeightsError, match="lenet5-mnist.json: model card is not valid JSON"):
        read_card("lenet5", "mnist", tmp_path)


def test_evaluate_command(capsys, data_dir):
    assert main(["evaluate", "lenet5-classic", "--dataset", "fashion-mnist",
                 "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "lenet5-classic on fashion-mnist: test accuracy" in out
    assert "Ankle boot" in out and "confusion matrix" in out
    assert len(out.splitlines()) == 1 + 1 + 1 + 10 + 1 + 1 + 1 + 10


def test_evaluate_takes_a_weights_file(tmp_path, capsys, data_dir):
    """`evaluate --weights FILE` takes the .safetensors `python -m zoo train` writes (as viz
    and export do; it was a NotADirectoryError), its card beside it naming the dataset."""
    for suffix in (".json", ".safetensors"):
        shutil.copy(WEIGHTS_DIR / f"lenet5-fashion-mnist{suffix}", tmp_path / f"mine{suffix}")
    weights = str(tmp_path / "mine.safetensors")
    assert main(["evaluate", "lenet5", "--weights", weights, "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"lenet5 on fashion-mnist ({weights}): test accuracy 91.31% (9131/10000)")
    assert main(["evaluate", "lenet5", "--weights", weights, "--dataset", "mnist"]) == 2
    assert "trained on fashion-mnist (its model card says), not mnist" in capsys.readouterr().err
    assert main(["evaluate", "resnet-mini", "--weights", weights]) == 2
    assert "its model card says lenet5, not resnet-mini" in capsys.readouterr().err
    assert main(["evaluate", "lenet5", "--weights", str(tmp_path / "mine.json")]) == 2
    assert "mine.json: expected a .safetensors file written by `python -m zoo train`" in capsys.readouterr().err


def test_every_card_reader_asks_for_the_same_fields(tmp_path):
    """The shipped cards' reader and the trained weights' reader use one checklist (they
    disagreed: a trained card without a recipe failed later, in the export's metadata)."""
    from zoo.weights import CARD_FIELDS, load_weights_file

    for suffix in (".json", ".safetensors"):
        shutil.copy(WEIGHTS_DIR / f"lenet5-mnist{suffix}", tmp_path / f"lenet5-mnist{suffix}")
    card_path = tmp_path / "lenet5-mnist.json"
    full = json.loads(card_path.read_text())
    for field in CARD_FIELDS:
        card_path.write_text(json.dumps({k: v for k, v in full.items() if k != field}))
        for read in (lambda: read_card("lenet5", "mnist", tmp_path),
                     lambda: load_weights_file(tmp_path / "lenet5-mnist.safetensors")):
            with pytest.raises(WeightsError, match=f"lenet5-mnist.json: model card lacks the field '{field}'"):
                read()


@pytest.mark.parametrize("model,dataset", sorted(FLOORS))
def test_stem_round_trip(model, dataset):
    from zoo.weights import split_stem, stem

    assert split_stem(stem(model, dataset)) == (model, dataset)


def test_split_stem_names_the_datasets():
    from zoo.weights import split_stem

    with pytest.raises(ValueError, match="does not end in a dataset name"):
        split_stem("lenet5-cifar")
