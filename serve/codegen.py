"""Generate the Python gRPC stubs for protos/, protos/grpc/ and protos/triton/ into serve/gen/.

    python -m serve.codegen [--out DIR]

The stubs are committed and never edited by hand; tests/test_codegen.py regenerates them
into a temporary directory and fails if they differ from the committed ones.

Our own protos, and gRPC's reflection v1 (protos/grpc/), are compiled under the virtual
path serve/gen/, so their generated modules import each other as serve.gen.<name>_pb2. Triton's keep their own file names
(grpc_service.proto, model_config.proto): their descriptors are then exactly those
tritonclient ships, so a process may hold both (the pool accepts an identical file twice).
protoc writes their cross-imports as top-level modules (`import model_config_pb2`); those
lines are pointed at serve.gen, the one edit made to what protoc writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
TRITON_PROTOS = PROTOS / "triton"
GEN = ROOT / "serve" / "gen"
# Generated modules import each other as serve.gen.<name>_pb2, so the proto files are
# mapped to that virtual path.
VIRTUAL = "serve/gen"


def _protoc(args: list[str], protos: list[Path]) -> None:
    from grpc_tools import protoc

    if protoc.main(["grpc_tools.protoc", *args]) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(p.name for p in protos)}")


def _import_from_gen(path: Path, modules: list[str]) -> None:
    """`import model_config_pb2 as x` -> `from serve.gen import model_config_pb2 as x`."""
    text = path.read_text()
    for module in modules:
        text = re.sub(rf"^import {module} as ", f"from {VIRTUAL.replace('/', '.')} import {module} as ",
                      text, flags=re.M)
    path.write_text(text)


def generate(out_root: Path) -> list[Path]:
    """Write the stubs under out_root/serve/gen/ and return their paths."""
    gen = out_root / VIRTUAL
    gen.mkdir(parents=True, exist_ok=True)
    outputs = [f"--python_out={out_root}", f"--pyi_out={out_root}", f"--grpc_python_out={out_root}"]
    for folder in (PROTOS, PROTOS / "grpc"):
        ours = sorted(folder.glob("*.proto"))
        _protoc([f"-I{VIRTUAL}={folder}", *outputs, *[f"{VIRTUAL}/{p.name}" for p in ours]], ours)
    triton = sorted(TRITON_PROTOS.glob("*.proto"))
    _protoc([f"-I{TRITON_PROTOS}", *[o.replace(str(out_root), str(gen)) for o in outputs],
             *[p.name for p in triton]], triton)
    modules = [f"{p.stem}_pb2" for p in triton]
    for path in gen.iterdir():
        if any(path.name.startswith(m) for m in modules):
            _import_from_gen(path, modules)
    return sorted(p for p in gen.iterdir() if "_pb2" in p.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.codegen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT), help=f"output root (default: {ROOT})")
    args = parser.parse_args(argv)
    for path in generate(Path(args.out)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
