"""int8 against float, per shipped model, all in one run: onnxruntime in-process with one
thread and with all threads, and through the server (python -m serve, its own process,
one tritonclient.grpc client sending sequential requests), at batch 1, 64 and 256. Each
figure is the median of alternating float / int8 rounds, so both see the same machine
noise; the ratio is float time / int8 time (above 1: int8 is faster).

    python bench/int8_speed.py [--models DIR] [--only lenet5-mnist ...] [--rounds 5] [--seconds 0.2] [--json out.json]

--models DIR reads <name>.onnx and <name>-int8.onnx from DIR (python -m export --all --int8
writes them, checked); without it, or for a file missing there, they are exported and
quantized unchecked into a temporary folder (the same code, without the checks).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from bench.server_process import start_server  # noqa: E402
from bench.figures import report  # noqa: E402

BATCHES = (1, 64, 256)
MIN_CALLS = 3  # per round, however slow a call is
MAX_CALLS = 20_000  # per round, however fast: every loop is bounded in count and time
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "avx_vnni_int8")
SHOWN_FLAGS = ("avx2", "avx512f", "avx512bw") + VNNI_FLAGS + ("amx_int8",)


def cpu() -> dict:
    """The CPU's name and the flags int8 speed depends on (Linux /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": {}}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", platform.machine()), "logical_cpus": os.cpu_count(),
            "flags": {flag: flag in flags for flag in SHOWN_FLAGS}}


def shipped_names() -> list[str]:
    from zoo.weights import shipped, stem

    return [stem(m, d) for m, d in sorted(shipped())]


def model_files(names: list[str], directory: str | None) -> dict[str, tuple[Path, Path]]:
    """name -> (float file, int8 file): from `directory` where there, else made unchecked
    in a temporary folder."""
    made = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    files = {}
    for name in names:
        given = Path(directory) if directory else None
        if given and (given / f"{name}.onnx").exists() and (given / f"{name}-int8.onnx").exists():
            files[name] = (given / f"{name}.onnx", given / f"{name}-int8.onnx")
            continue
        from export.exporter import write_unchecked
        from export.int8 import write_unchecked_int8

        float_path = write_unchecked(name, made)
        files[name] = (float_path, write_unchecked_int8(float_path))
        print(f"  exported and quantized {name} (unchecked) into {made}", flush=True)
    return files


def per_call_seconds(call, seconds: float) -> float:
    """Mean seconds per call over one round: at least MIN_CALLS calls and `seconds` long,
    at most MAX_CALLS calls."""
    calls, start = 0, time.perf_counter()
    while calls < MAX_CALLS and (calls < MIN_CALLS or time.perf_counter() - start < seconds):
        call()
        calls += 1
    return (time.perf_counter() - start) / calls


def alternate(calls: dict[str, callable], rounds: int, seconds: float) -> dict[str, float]:
    """Median seconds per call of each of `calls`, measured in alternating rounds after a
    warm-up call each."""
    for call in calls.values():
        call()
    times = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            times[key].append(per_call_seconds(call, seconds))
    return {key: statistics.median(values) for key, values in times.items()}


def images(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 1, 28, 28), dtype=np.float32)


def in_process(files: tuple[Path, Path], threads: int, rounds: int, seconds: float) -> dict[int, dict]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {precision: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for precision, path in zip(("float", "int8"), files)}
    figures = {}
    for batch in BATCHES:
        feed = {"input": images(batch)}
        figures[batch] = alternate({p: (lambda s=s: s.run(["logits"], feed)) for p, s in sessions.items()},
                                   rounds, seconds)
    return figures


def through_server(address: str, name: str, rounds: int, seconds: float) -> dict[int, dict]:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(address)
    try:
        figures = {}
        for batch in BATCHES:
            tensor = triton.InferInput("input", [batch, 1, 28, 28], "FP32")
            tensor.set_data_from_numpy(images(batch))
            calls = {p: (lambda model=model: client.infer(model, [tensor], client_timeout=60))
                     for p, model in (("float", name), ("int8", f"{name}-int8"))}
            figures[batch] = alternate(calls, rounds, seconds)
        return figures
    finally:
        client.close()


def rows_of(name: str, mode: str, figures: dict[int, dict]) -> list[dict]:
    return [{"model": name, "mode": mode, "batch": batch, "float_ms": 1000 * f["float"], "int8_ms": 1000 * f["int8"],
             "speedup": f["float"] / f["int8"]} for batch, f in figures.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="folder with <name>.onnx and <name>-int8.onnx (default: export them, "
                                         "unchecked, into a temporary folder)")
    parser.add_argument("--only", nargs="+", help="these shipped models (default: all eight)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating float / int8 rounds (default: 5)")
    parser.add_argument("--seconds", type=float, default=0.2, help="length of one round (default: 0.2)")
    parser.add_argument("--no-server", action="store_true", help="in-process only (default: also the server)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    args = parser.parse_args()
    names = args.only or shipped_names()
    unknown = sorted(set(names) - set(shipped_names()))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(shipped_names())}")
    info = cpu()
    vnni = [f for f in VNNI_FLAGS if info["flags"].get(f)]
    print(f"CPU {info['model']}, {info.get('logical_cpus')} logical CPUs; "
          f"{'VNNI: ' + ', '.join(vnni) if vnni else 'no VNNI (AVX-512 VNNI, AVX-VNNI): 8-bit products in 16 bits'}")
    files = model_files(names, args.models)
    threads_all = os.cpu_count() or 1
    rows, sizes = [], {}
    for name, (float_path, int8_path) in files.items():
        sizes[name] = {"float_bytes": float_path.stat().st_size, "int8_bytes": int8_path.stat().st_size}
        for threads in sorted({1, threads_all}):
            mode = f"in-process {threads} thread{'s' if threads > 1 else ''}"
            rows += rows_of(name, mode, in_process((float_path, int8_path), threads, args.rounds, args.seconds))
        print_rows(name, sizes[name], [r for r in rows if r["model"] == name])
    if not args.no_server:
        served = Path(tempfile.mkdtemp(prefix="int8-bench-served-"))
        for float_path, int8_path in files.values():
            for path in (float_path, int8_path):
                shutil.copy(path, served / path.name)
        server = start_server(served)
        try:
            for name in files:
                server_rows = rows_of(name, "server (gRPC)", through_server(server.address, name, args.rounds,
                                                                         args.seconds))
                rows += server_rows
                print_rows(name, sizes[name], server_rows)
        finally:
            code = server.stop()
        if code != 0:
            print(f"the server exited with {code}:\n{server.output}", file=sys.stderr)
            return 1
    figures = {"cpu": info, "batches": list(BATCHES), "rounds": args.rounds, "round_seconds": args.seconds,
               "speedup": "float time / int8 time", "sizes": sizes, "rows": rows}
    report(figures, args.json)
    return 0


def print_rows(name: str, size: dict, rows: list[dict]) -> None:
    ratio = size["float_bytes"] / size["int8_bytes"]
    print(f"{name}: {size['float_bytes'] / 1024:,.0f} KiB float, {size['int8_bytes'] / 1024:,.0f} KiB int8 "
          f"({ratio:.1f}x smaller)")
    for row in rows:
        print(f"  {row['mode']:<22} batch {row['batch']:>3}: float {row['float_ms']:8.3f} ms, int8 "
              f"{row['int8_ms']:8.3f} ms: int8 {row['speedup']:.2f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
