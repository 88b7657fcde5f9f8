"""`python -m export` refuses a bad argument before it imports torch or onnx, names the
extra to install where they are missing, and never writes a folder that shadows a package."""

from __future__ import annotations

import pytest

from export.__main__ import main, zoo_parser
from export.options import EXPORT_EXTRA, MAX_OPSET
from tests.blocked_imports import run_module

LEAN = ("torch", "onnx", "onnxscript", "safetensors")  # what the serve install lacks


def run_without(blocked, *args, cwd=None):
    """`python -m export args` in an interpreter where `blocked` cannot be imported."""
    return run_module("export", list(args), blocked=tuple(blocked), cwd=cwd, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["lenet6"], "unknown model 'lenet6'; valid models: lenet5, lenet5-classic, resnet-mini, twoblock-cnn"),
    (["lenet5", "--opset", "9"], f"opset 9 is not supported; use 17 to {MAX_OPSET}"),
    (["lenet5", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["lenet5", "--triton-repo", "triton"], "a folder named 'triton' here would shadow the Python package"),
    (["custom", "mynet", "--input-shape", "3,32"], "--input-shape 3,32: expected C,H,W"),
    (["custom", "m:Net", "--input-shape", "3,32,32", "--mean", "0.5,0.5"],
     "--mean has 2 values for 3 channels; expected 1 or 3"),
    (["custom", "m:Net", "--input-shape", "1,28,28", "--std", "0"], "--std [0.0] must be positive"),
    (["custom", "m:Net", "--input-shape", "1,28,28", "--mean", "x"], "--mean 'x' is not a number or a list"),
])
def test_argument_errors_need_neither_torch_nor_onnx(args, message, tmp_path):
    result = run_without(LEAN, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,missing", [(["lenet5"], "torch, safetensors, onnx, onnxscript"),
                                          (["verify", "model.onnx"], "onnx")])
def test_the_lean_install_names_the_extra(args, missing, tmp_path):
    result = run_without(LEAN, *args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: python -m export {'verify ' if args[0] == 'verify' else ''}needs {missing}, which this environment "
        f"lacks; install the export extra: {EXPORT_EXTRA}"], result.stderr


def test_verify_needs_no_torch(tmp_path):
    from tests.test_export_verify import small_cnn, write_model_zoo_layout

    path = write_model_zoo_layout(tmp_path / "cnn", small_cnn())
    result = run_without(("torch", "safetensors", "onnxscript"), "verify", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "  passed"


@pytest.mark.parametrize("module", ["zoo", "export", "serve.client"])
def test_every_command_line_says_its_version_without_torch(module):
    from importlib.metadata import version

    result = run_module(module, ["--version"], blocked=LEAN, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"python -m {module} {version('cnn-zoo')}\n"


def test_max_opset_is_the_pinned_onnx_one():
    import onnx

    assert MAX_OPSET == onnx.defs.onnx_opset_version()


@pytest.mark.parametrize("flag,folder", [("--triton-repo", "triton"), ("--out", "torch"), ("--out", "numpy")])
def test_a_folder_that_would_shadow_a_package_is_refused(flag, folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["lenet5", flag, folder]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{flag} {folder}: a folder named {folder!r} here would shadow" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_the_triton_repository_defaults_to_tritons_own_name():
    assert zoo_parser().parse_args(["lenet5", "--triton-repo"]).triton_repo == "model_repository"
    assert zoo_parser().parse_args(["lenet5"]).triton_repo is None


@pytest.mark.parametrize("made_by", [["--triton-repo"], ["--out"], ["viz --out"]])
def test_what_the_commands_write_by_default_is_ignored_by_git(made_by):
    """model_repository/ (export --triton-repo), models/ (export) and viz/ (zoo viz), made
    in a checkout by the README's commands, are not offered for commit."""
    import shutil
    import subprocess
    from pathlib import Path

    from export.options import DEFAULT_TRITON_REPO
    from zoo.__main__ import build_parser

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    folder = {"--triton-repo": DEFAULT_TRITON_REPO, "--out": zoo_parser().parse_args(["lenet5"]).out,
              "viz --out": build_parser().parse_args(["viz", "lenet5", "--index", "0"]).out}[made_by[0]]
    result = subprocess.run(["git", "check-ignore", "-q", f"{folder}/lenet5-mnist/1/model.onnx"], cwd=root)
    assert result.returncode == 0, f"{folder}/ is not in .gitignore"
