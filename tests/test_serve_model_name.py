"""`--model-name NAME`: the one model in --models served under that name, however KServe's
storage initializer laid it out in /mnt/models (the running server: tests/test_deploy_contract.py)."""

from __future__ import annotations

import shutil

import pytest

from serve.core.repository import find_models


def names(directory, model_name):
    return [(s.name, s.version, s.path.relative_to(directory).as_posix()) for s in find_models(directory, model_name)]


def test_a_single_file_of_any_name(models_dir, tmp_path):
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path / "model.onnx")
    assert names(tmp_path, "digits") == [("digits", "", "model.onnx")]


def test_the_folder_is_a_model_folder(models_dir, tmp_path):
    for version in ("1", "2"):
        (tmp_path / version).mkdir()
        shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path / version / "model.onnx")
    assert names(tmp_path, "digits") == [("digits", "1", "1/model.onnx"), ("digits", "2", "2/model.onnx")]


def test_a_repository_of_one_model_is_renamed(models_dir, tmp_path):
    (tmp_path / "lenet" / "1").mkdir(parents=True)
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path / "lenet" / "1" / "model.onnx")
    assert names(tmp_path, "digits") == [("digits", "1", "lenet/1/model.onnx")]


def test_a_repository_of_several_keeps_its_names_and_must_hold_the_one_asked_for(models_dir, tmp_path):
    for path in models_dir.glob("*.onnx"):
        shutil.copy(path, tmp_path)
    assert [n for n, _, _ in names(tmp_path, "lenet5-mnist")] == ["lenet5-fashion-mnist", "lenet5-mnist"]
    with pytest.raises(ValueError, match=r"--model-name digits: .* holds several models \(lenet5-fashion-mnist, "
                                         r"lenet5-mnist\) and none of them has that name"):
        find_models(tmp_path, "digits")


def test_a_name_that_could_never_be_served_is_refused(models_dir, tmp_path):
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="--model-name '../x' is not valid"):
        find_models(tmp_path, "../x")


def test_without_a_name_nothing_changes(models_dir, tmp_path):
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path / "model.onnx")
    assert names(tmp_path, None) == [("model", "", "model.onnx")]
