"""How every benchmark gives its figures: one JSON line on stdout, and with --json the
same, indented, in a file."""

from __future__ import annotations

import json
from pathlib import Path


def report(figures: dict, json_path: str | None) -> None:
    print(json.dumps(figures))
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
