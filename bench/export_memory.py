"""Peak memory (RSS) and wall time of `python -m export`, one child process per shipped
model, against the 1.5 GB per-export target; optionally `python -m export --all` and a
pytest run as well. Exports run one at a time, each into its own temporary directory.

    python bench/export_memory.py [--models lenet5,resnet-mini] [--all] [--pytest [FILE ...]]
                                  [--json out.json]

Two peaks are measured per child. `peak_rss_mib` is the kernel's own high-water mark
(ru_maxrss from wait4): exact, for the largest single process in the child's tree.
`sampled_tree_mib` adds up the RSS of the child and all its descendants every 50 ms and
keeps the largest sum: what the machine as a whole had to hold (it can miss a short spike).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from zoo.weights import shipped

EXPORT_TARGET_MIB = 1.5 * 1000**3 / 1024**2  # 1.5 GB per export
PYTEST_TARGET_MIB = 3 * 1000**3 / 1024**2  # 3 GB for the test suite
SAMPLE_SECONDS = 0.05
DEFAULT_PYTEST = ["tests/test_export.py"]


@dataclass(frozen=True)
class Measurement:
    name: str
    command: list[str]
    exit_code: int
    seconds: float
    peak_rss_mib: float
    sampled_tree_mib: float
    target_mib: float

    @property
    def ratio(self) -> float:
        """Peak over target: at most 1.0 meets it."""
        return self.peak_rss_mib / self.target_mib

    def to_json(self) -> dict:
        return {**asdict(self), "ratio_to_target": self.ratio, "meets_target": self.ratio <= 1.0}


def tree_rss_kib(pid: int) -> int:
    """Resident memory of `pid` and every descendant, in KiB (Linux /proc); 0 once gone."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


def measure(name: str, command: list[str], target_mib: float, log: Path) -> Measurement:
    """Run `command` to the end, output to `log`, polling its tree's memory meanwhile."""
    peak_tree_kib = 0
    done = threading.Event()
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

        def sample() -> None:
            nonlocal peak_tree_kib
            while not done.wait(SAMPLE_SECONDS):
                peak_tree_kib = max(peak_tree_kib, tree_rss_kib(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 rather than proc.wait(): it also returns the child's resource usage, whose
        # ru_maxrss (KiB on Linux) covers the child and the descendants it waited for.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    return Measurement(name, command, proc.returncode, seconds, usage.ru_maxrss / 1024,
                       peak_tree_kib / 1024, target_mib)


def export_command(model: str | None, dataset: str | None, out: Path) -> list[str]:
    what = ["--all"] if model is None else [model, "--dataset", dataset]
    return [sys.executable, "-m", "export", *what, "--out", str(out)]


def print_row(m: Measurement) -> None:
    status = "ok" if m.exit_code == 0 else f"EXIT {m.exit_code}"
    print(f"{m.name:<32}{m.seconds:>8.1f}s{m.peak_rss_mib:>10,.0f}{m.sampled_tree_mib:>10,.0f}"
          f"{m.ratio:>8.2f}x  {status}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated model names (default: every shipped model)")
    parser.add_argument("--all", action="store_true", help="also time `python -m export --all` (default: off)")
    parser.add_argument("--no-each", action="store_true", help="skip the per-model exports (default: run them)")
    parser.add_argument("--pytest", nargs="*", metavar="ARG",
                        help=f"also run `python -m pytest -q -x ARG...` (default args: {' '.join(DEFAULT_PYTEST)})")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    pairs = sorted(shipped())
    if args.models:
        wanted = args.models.split(",")
        unknown = sorted(set(wanted) - {m for m, _ in pairs})
        if unknown:
            print(f"unknown model(s) {', '.join(unknown)}; shipped: {', '.join(sorted({m for m, _ in pairs}))}",
                  file=sys.stderr)
            return 2
        pairs = [p for p in pairs if p[0] in wanted]
    runs: list[tuple[str, list[str], float]] = []
    work = Path(tempfile.mkdtemp(prefix="export-memory-"))
    if not args.no_each:
        runs += [(f"{m} {d}", export_command(m, d, work / f"{m}-{d}"), EXPORT_TARGET_MIB) for m, d in pairs]
    if args.all:
        runs.append(("export --all", export_command(None, None, work / "all"), EXPORT_TARGET_MIB))
    if args.pytest is not None:
        pytest_args = args.pytest or DEFAULT_PYTEST
        runs.append((f"pytest {' '.join(pytest_args)}", [sys.executable, "-m", "pytest", "-q", "-x", *pytest_args],
                     PYTEST_TARGET_MIB))
    print(f"peak resident memory, one child process at a time; targets: export "
          f"{EXPORT_TARGET_MIB:,.0f} MiB (1.5 GB), test suite {PYTEST_TARGET_MIB:,.0f} MiB (3 GB); "
          f"logs in {work}")
    print(f"{'run':<32}{'wall':>9}{'peak MiB':>10}{'tree MiB':>10}{'/target':>9}")
    results = []
    for index, (name, command, target) in enumerate(runs):
        result = measure(name, command, target, work / f"{index:02d}.log")
        print_row(result)
        results.append(result)
    figures = {"cpus": os.cpu_count(), "logs": str(work), "runs": [r.to_json() for r in results]}
    print(json.dumps(figures))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    ok = all(r.exit_code == 0 and r.ratio <= 1.0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
