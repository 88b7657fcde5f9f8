"""Generate the Python gRPC stubs for protos/*.proto into serve/gen/.

    python -m serve.codegen [--out DIR]

The stubs are committed and never edited by hand; tests/test_codegen.py regenerates them
into a temporary directory and fails if they differ from the committed ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "serve" / "gen"
# Generated modules import each other as serve.gen.<name>_pb2, so the proto files are
# mapped to that virtual path.
VIRTUAL = "serve/gen"


def generate(out_root: Path) -> list[Path]:
    """Write the stubs under out_root/serve/gen/ and return their paths."""
    from grpc_tools import protoc

    protos = sorted(PROTOS.glob("*.proto"))
    (out_root / VIRTUAL).mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{VIRTUAL}={PROTOS}", f"--python_out={out_root}",
            f"--pyi_out={out_root}", f"--grpc_python_out={out_root}",
            *[f"{VIRTUAL}/{p.name}" for p in protos]]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(p.name for p in protos)}")
    return sorted(p for p in (out_root / VIRTUAL).iterdir() if "_pb2" in p.name)


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
