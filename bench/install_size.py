"""Disk size of each install the README names: `pip install ".[serve]"` (the lean server),
".[zoo]" and ".[export]", the last the baseline the others are compared with (a ratio).

    python bench/install_size.py [--json out.json]            # from this environment
    python bench/install_size.py --build [--extras serve]     # build fresh venvs, measure them

Without --build: the extra's dependency closure is resolved from pyproject.toml and the
package metadata installed here (install through constraints.txt, so the versions are the
pinned ones), and each package's files as listed in its RECORD are summed, plus pip and
setuptools, which every fresh Python 3.11 venv holds (our own package is not counted). With --build: `python -m venv` and `pip install -c constraints.txt
".[extra]"` in a temporary directory (needs the package index), then every file in the venv.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "cnn-zoo"
EXTRAS = ("serve", "zoo", "export")
BASELINE = "export"
MB = 1e6
FRESH_VENV = {"pip", "setuptools"}  # what `python3.11 -m venv` puts in every venv


def project_requirements(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(r) for r in names]


def closure(extra: str) -> set[str]:
    """Canonical names of every distribution `pip install ".[extra]"` installs, ours aside."""
    seen: set[str] = set()
    todo = project_requirements(None) + project_requirements(extra)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == PROJECT:  # "cnn-zoo[zoo]" inside an extra: that extra's requirements
            todo += [r for e in req.extras for r in project_requirements(e)]
            continue
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.distribution(name).requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                todo.append(dep)
    return seen


def installed_bytes(name: str) -> int:
    dist = metadata.distribution(name)
    return sum(p.stat().st_size for p in (dist.locate_file(f) for f in dist.files or []) if p.is_file())


def from_metadata(extra: str) -> dict:
    names = sorted(closure(extra) | FRESH_VENV)
    sizes = {n: installed_bytes(n) for n in names}
    return {"extra": extra, "method": "RECORD sums", "bytes": sum(sizes.values()),
            "packages": {n: sizes[n] for n in sorted(sizes, key=sizes.get, reverse=True)}}


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def built(extra: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"),
                        f"{ROOT}[{extra}]"], check=True)
        return {"extra": extra, "method": "built venv", "bytes": tree_bytes(venv)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="build fresh venvs (needs the package index)")
    parser.add_argument("--extras", nargs="+", default=list(EXTRAS), choices=EXTRAS,
                        help=f"which installs (default: all; the ratio needs {BASELINE})")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    measure = built if args.build else from_metadata
    results = {extra: measure(extra) for extra in args.extras}
    for extra, r in results.items():
        line = f'.[{extra}]: {r["bytes"] / MB:,.0f} MB ({r["method"]})'
        if BASELINE in results and extra != BASELINE:
            line += f', {r["bytes"] / results[BASELINE]["bytes"]:.2f}x of .[{BASELINE}]'
        print(line)
        for name, size in list(r.get("packages", {}).items())[:5]:
            print(f"    {name:<24} {size / MB:8.1f} MB")
    text = json.dumps(results, indent=2)
    print(text if not args.json else f"wrote {args.json}")
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
