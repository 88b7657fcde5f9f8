"""Run every README block marked runnable, in order, in one empty directory, and compare
each command's output with the README's (a line '...' stands for any number of lines;
text after '...' inside a line is matched as a prefix)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"<!-- runnable -->\n```console\n(.*?)```", re.S)


def parse_blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """Per block: (command, expected output lines) pairs."""
    blocks = []
    for body in BLOCK.findall(text):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line.rstrip())
        blocks.append(steps)
    return blocks


def line_matches(expected: str, actual: str) -> bool:
    if expected.endswith("..."):
        return actual.startswith(expected[:-3])
    return expected == actual


def matches(expected: list[str], actual: list[str]) -> bool:
    if not expected:
        return True
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and line_matches(head, actual[0]) and matches(rest, actual[1:])


def test_readme_has_runnable_blocks():
    blocks = parse_blocks(README.read_text())
    commands = [cmd for block in blocks for cmd, _ in block]
    assert any(c.startswith("python -m zoo summary") for c in commands)
    assert any(c.startswith("python -m export") for c in commands)
    assert any(c.startswith("python -m serve.client") for c in commands)


@pytest.mark.needs_data
def test_readme_commands_print_what_the_readme_says(tmp_path):
    steps = [step for block in parse_blocks(README.read_text()) for step in block]
    marker = "@@README-STEP@@"
    script = ["set -e"]
    for i, (command, _) in enumerate(steps):
        script += [f"echo {marker}{i}", command]
    script += ["wait"]
    # `python` in the README is this test's interpreter, installed or not on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = re.split(rf"{marker}\d+\n", result.stdout)[1:]
    assert len(outputs) == len(steps)
    for (command, expected), actual in zip(steps, outputs):
        lines = actual.rstrip("\n").splitlines() if actual.strip() else []
        assert matches(expected, lines), f"$ {command}\nexpected:\n" + "\n".join(expected) + \
            "\nactual:\n" + "\n".join(lines)


def quickstart_commands(text: str) -> list[str]:
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"```\n(.*?)```", section, re.S) for line in block.splitlines()
            for line in [c.strip() for c in line.split("&&")]]


def test_quickstart_typed_as_written_uses_the_venv():
    """Every `python` the Quickstart runs is the venv's: named by path, or after activating
    it (the walk-through's bare `python` then means the same)."""
    activated = False
    commands = quickstart_commands(README.read_text())
    assert commands
    for command in commands:
        activated = activated or command == "source .venv/bin/activate"
        if command.startswith(("python ", "pip ", "pytest")):
            assert activated, f"{command!r} runs before the venv is activated"
    assert activated, "the Quickstart never activates the venv, yet the walk-through runs `python`"


def test_data_note_comes_before_the_quickstart_commands():
    section = README.read_text().split("## Quickstart", 1)[1]
    first_command = section.index("```")
    for word in ("ZOO_DATA_DIR", "--data-dir", "ZOO_DATA_MIRRORS"):
        assert 0 <= section.index(word) < first_command, word


def test_using_a_model_without_this_package(models_dir, tmp_path):
    """The README's snippet, as written, in a directory holding what the walk-through made
    (models/lenet5-mnist.onnx) and the example digit, with onnx, torch and our packages
    unimportable: onnxruntime, NumPy and Pillow alone."""
    import shutil

    from tests.blocked_imports import run_python

    snippet = re.search(r"<!-- without-this-package -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "models").mkdir()
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path / "models")
    shutil.copy(README.parent / "serve" / "examples" / "digit-7-0.png", tmp_path)
    result = run_python(snippet, ("onnx", "torch", "zoo", "export", "serve"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "7\n"


def test_the_shipped_weights_section_states_the_records():
    """The floors the README states are the records' (zoo/records.py), and the accuracy
    table the shipped cards' figures."""
    from zoo.records import RECORDS
    from zoo.weights import read_card

    section = README.read_text().split("## Shipped weights", 1)[1].split("\n## ", 1)[0]
    sentence = re.search(r"these floors: (.*?)\.\s", " ".join(section.split()) + " ").group(1)
    floors = {model: (float(mnist), float(fashion))
              for model, mnist, fashion in re.findall(r"([\w-]+) ([\d.]+) / ([\d.]+)", sentence)}
    assert floors == {model: (100 * RECORDS[(model, "mnist")].floor, 100 * RECORDS[(model, "fashion-mnist")].floor)
                      for model, _ in RECORDS}
    table = {model: (float(mnist), float(fashion))
             for model, mnist, fashion in re.findall(r"\| `([\w-]+)` \| ([\d.]+) % \| ([\d.]+) % \|", section)}
    assert table == {model: (round(100 * read_card(model, "mnist")["test_accuracy"], 2),
                             round(100 * read_card(model, "fashion-mnist")["test_accuracy"], 2))
                     for model, _ in RECORDS}
