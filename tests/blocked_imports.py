"""Run Python code in a subprocess where some packages cannot be imported, as in an install
that lacks them (the lean serve install has no torch; the zoo extra has no onnx): a finder
first on sys.meta_path raises ModuleNotFoundError for them and everything below them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BLOCKER = """\
import importlib.abc, sys
class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _NotInstalled())
"""

# Packages `pip install ".[zoo]"` does not install (ours and others').
NOT_IN_ZOO_EXTRA = ("export", "serve", "onnx", "onnxruntime", "onnxscript", "onnx_ir", "grpc", "tritonclient",
                    "cv2", "hypothesis")


def run_python(code: str, blocked: tuple[str, ...], *, cwd: str | os.PathLike | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -c code` with `blocked` unimportable, this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=set(blocked)) + code],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def run_module(module: str, args: list[str], blocked: tuple[str, ...], **kwargs) -> subprocess.CompletedProcess:
    """`python -m module args...` with `blocked` unimportable."""
    code = (f"import runpy; sys.argv = [{module!r}, *{args!r}]; "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return run_python(code, blocked, **kwargs)
