"""Triton's own benchmark tool, perf_analyzer, unchanged and with its default settings,
against both our front ends, for a dynamically batched model and a fixed-batch one.

    sudo python bench/perf_analyzer.py [--json out.json] [--cache DIR] [--attempts 3] [--models DIR]
                                       [--only defaults|sweep]

One server (`python -m serve`, its defaults, gRPC and HTTP on free loopback ports) serves
lenet5-mnist (dynamic batch axis: the batcher forms batches of up to 64) and
lenet5-mnist-batch1 (the same network with its batch axis fixed at 1, as torch.onnx.export
writes a model by default: ModelConfig max_batch_size 0, no batcher). perf_analyzer runs
`-m MODEL -i grpc|http -u 127.0.0.1:PORT` and nothing else for each model on each front end
(Triton's defaults: concurrency 1, synchronous requests, random input, 5 s windows until
three in a row agree within 10 %, at most 10), then with `--concurrency-range N` for N = 2,
3 and 4 (one command each, defaults otherwise) for lenet5-mnist over gRPC, where the
server's execution count falling below its inference count shows requests batched
together. Its tables are printed as it writes them, then a summary of all runs; the
figures (throughput, latency percentiles, the server's overhead / queue / compute input /
infer / output breakdown and counts, the machine's load average) go to --json. On these
shared, noisy machines a window sequence may not settle ("Failed to obtain stable
measurement"): such a run is repeated, unchanged, up to --attempts times, and the JSON
says how often. Every run is bounded by a timeout.

How it gets a newer C library. The perf-analyzer 2.x wheels on PyPI are
manylinux_2_38 (glibc 2.38 and GLIBCXX_3.4.32); this machine is Debian 12 (glibc 2.36),
where plain pip finds only a 0.1.0 placeholder. So, once, cached under --cache
(default ~/.cache/cnn-zoo/perf-analyzer):
  1. `debootstrap --variant=minbase --include=libssl3t64,zlib1g,libstdc++6 trixie` from
     the Debian mirror (Debian 13: glibc 2.41, libstdc++ of GCC 14; OpenSSL 3 and zlib are
     the binary's only other libraries) into trixie.partial/, renamed to trixie/ once
     complete, so a broken bootstrap is never reused; debootstrap checks the release's
     signature with the host's debian-archive-keyring. About 200 MB.
  2. `pip download --no-deps --only-binary=:all: --platform manylinux_2_38_x86_64
     perf-analyzer==VERSION` with this interpreter's pip (the index's hashes checked) into
     wheels/, and the wheel installed into the root by unpacking it (a wheel is a zip file
     of what pip would put in site-packages) at /opt/perf_analyzer-VERSION/. Its console
     script is a Python wrapper that runs bin/perf_analyzer and drops its exit status, so
     the binary is run directly and its exit status is kept.
  3. Each run is `chroot ROOT /opt/perf_analyzer-VERSION/perf_analyzer/bin/perf_analyzer
     ...`. A chroot changes only the file system: the network is the host's, so
     127.0.0.1:PORT is our server, started normally on this machine. Nothing is mounted
     into the root, so the cache can be deleted with rm -rf at any time.
It needs root (debootstrap and chroot) and the Debian mirror and PyPI (the first time
only). The first run spends about 2 minutes on the root; later ones reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from bench.server_process import models_dir_with, start_server  # noqa: E402

VERSION = "2.60.0"  # the perf-analyzer release issue 21 was measured with
SUITE = "trixie"  # the oldest Debian release with glibc >= 2.38
ROOT_PACKAGES = "libssl3t64,zlib1g,libstdc++6"
MIRROR = "http://deb.debian.org/debian"
PLATFORM = "manylinux_2_38_x86_64"
DYNAMIC, FIXED = "lenet5-mnist", "lenet5-mnist-batch1"
UNSTABLE = "Failed to obtain stable measurement"
RUN_TIMEOUT_S = 150  # one concurrency level: at most 10 windows of 5 s, plus start and statistics calls
SWEEP = (2, 3, 4)  # concurrency levels for the dynamic model over gRPC, beside the default 1
DEFAULT_CACHE = Path.home() / ".cache" / "cnn-zoo" / "perf-analyzer"


class SetupError(Exception):
    """Something this script needs is missing; the message says what to do."""


# -- the trixie root and the wheel ------------------------------------------------------


def timed(label: str, timings: dict, fn, *args):
    start = time.monotonic()
    result = fn(*args)
    timings[label] = round(time.monotonic() - start, 1)
    print(f"  {label}: {timings[label]} s", flush=True)
    return result


def bootstrap_root(cache: Path, mirror: str) -> Path:
    """ROOT: a Debian trixie minbase, made once."""
    root = cache / SUITE
    if (root / ".cnn-zoo-complete").exists():
        return root
    if shutil.which("debootstrap") is None:
        raise SetupError("debootstrap is not installed (Debian: apt-get install debootstrap)")
    partial = cache / f"{SUITE}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # an interrupted bootstrap; nothing is ever mounted in it
    shutil.rmtree(root, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "debootstrap.log"
    with open(log, "w") as out:
        done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={ROOT_PACKAGES}", SUITE,
                               str(partial), mirror], stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    if done.returncode != 0:
        raise SetupError(f"debootstrap {SUITE} from {mirror} failed (exit {done.returncode}); its log: {log}")
    (partial / ".cnn-zoo-complete").write_text(f"debootstrap --variant=minbase {SUITE} {mirror}\n")
    partial.rename(root)
    return root


def download_wheel(cache: Path, version: str) -> Path:
    wheels = cache / "wheels"
    found = sorted(wheels.glob(f"perf_analyzer-{version}-*.whl"))
    if found:
        return found[-1]
    wheels.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "--platform", PLATFORM, "--dest", str(wheels), f"perf-analyzer=={version}"],
                          capture_output=True, text=True, timeout=600)
    found = sorted(wheels.glob(f"perf_analyzer-{version}-*.whl"))
    if done.returncode != 0 or not found:
        raise SetupError(f"pip could not download perf-analyzer=={version} for {PLATFORM}:\n{done.stderr.strip()}")
    return found[-1]


def install_wheel(root: Path, wheel: Path, version: str) -> str:
    """Unpack the wheel into ROOT/opt/perf_analyzer-VERSION; the binary's path inside the root."""
    target = root / "opt" / f"perf_analyzer-{version}"
    inside = f"/opt/perf_analyzer-{version}/perf_analyzer/bin/perf_analyzer"
    if (target / ".cnn-zoo-complete").exists():
        return inside
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(partial)
    binary = partial / inside.split(target.name + "/", 1)[1]
    binary.chmod(0o755)  # zipfile keeps no modes
    (partial / ".cnn-zoo-complete").write_text(f"{wheel.name}\n")
    partial.rename(target)
    return inside


CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
              "LANG": "C.UTF-8"}


def in_root(root: Path, *command: str) -> list[str]:
    """`command` inside the root (chroot execs it: the process is the command's own)."""
    return [shutil.which("chroot") or "/usr/sbin/chroot", str(root), *command]


def chroot_output(root: Path, *command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`command` inside the root, on the host's network, with a clean environment."""
    return subprocess.run(in_root(root, *command), capture_output=True, text=True, timeout=timeout,
                          env=CHROOT_ENV)


def chroot_streamed(root: Path, *command: str, timeout: float) -> tuple[int | None, str]:
    """Like chroot_output, its output printed as it comes; exit status None when killed at `timeout`."""
    proc = subprocess.Popen(in_root(root, *command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=CHROOT_ENV)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            print(line, end="", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        code = None
    reader.join(10)
    return code, "".join(lines)


def prepare(cache: Path, mirror: str, version: str) -> tuple[Path, str, dict]:
    """The root with perf_analyzer in it (made or reused), the binary's path inside, and facts."""
    if os.geteuid() != 0:
        raise SetupError("run as root: debootstrap and chroot need it")
    timings: dict = {}
    print(f"perf_analyzer {version} in a Debian {SUITE} root under {cache}:", flush=True)
    root = timed("root (debootstrap, or reused)", timings, bootstrap_root, cache, mirror)
    wheel = timed("wheel (pip download, or reused)", timings, download_wheel, cache, version)
    binary = timed("install (unpack, or reused)", timings, install_wheel, root, wheel, version)
    libc = chroot_output(root, "/lib/x86_64-linux-gnu/libc.so.6").stdout.splitlines()
    check = chroot_output(root, binary, "--version")
    if check.returncode != 0:
        raise SetupError(f"perf_analyzer does not start in {root}:\n{check.stdout}{check.stderr}")
    facts = {"root": str(root), "wheel": wheel.name, "root_libc": libc[0] if libc else "",
             "perf_analyzer_version": (check.stdout + check.stderr).strip(), "setup_s": timings}
    print(f"  {facts['root_libc']}; {facts['perf_analyzer_version']}", flush=True)
    return root, binary, facts


# -- the models and the runs ------------------------------------------------------------


def fixed_batch_copy(source: Path, target: Path, batch: int = 1) -> Path:
    """The model with its batch axis fixed at `batch` (input and output), as torch.onnx.export
    writes one without dynamic_axes."""
    import onnx

    proto = onnx.load(str(source))
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch  # replaces the symbolic dim_param
    onnx.checker.check_model(proto)
    tmp = target.with_name(target.name + ".part")
    onnx.save_model(proto, str(tmp))
    tmp.rename(target)
    return target


@dataclass
class Run:
    model: str
    protocol: str
    extra: list[str] = field(default_factory=list)
    attempts: int = 0
    returncode: int | None = None
    seconds: float = 0.0
    load_average: list[float] = field(default_factory=list)  # 1-minute load as each attempt began
    levels: list[dict] = field(default_factory=list)  # one per concurrency level measured
    error: str = ""
    output: str = ""

    @property
    def label(self) -> str:
        return " ".join([self.model, self.protocol, *self.extra])


NUMBER = r"([\d.]+)"
CLIENT_FIELDS = {
    "request_count": rf"Request count: {NUMBER}",
    "throughput_infer_per_s": rf"Throughput: {NUMBER} infer/sec",
    "avg_latency_us": rf"Avg latency: {NUMBER} usec",
    "latency_std_us": rf"standard deviation {NUMBER} usec",
    **{f"p{q}_latency_us": rf"p{q} latency: {NUMBER} usec" for q in (50, 90, 95, 99)},
}
SERVER_FIELDS = {
    "inference_count": rf"Inference count: {NUMBER}",
    "execution_count": rf"Execution count: {NUMBER}",
    "success_count": rf"Successful request count: {NUMBER}",
    "avg_request_latency_us": rf"Avg request latency: {NUMBER} usec",
    "overhead_us": rf"overhead {NUMBER} usec",
    "queue_us": rf"queue {NUMBER} usec",
    "compute_input_us": rf"compute input {NUMBER} usec",
    "compute_infer_us": rf"compute infer {NUMBER} usec",
    "compute_output_us": rf"compute output {NUMBER} usec",
}


def parse_levels(output: str) -> list[dict]:
    """perf_analyzer's summary, one entry per concurrency level it measured."""
    levels = []
    for block in re.split(r"^Request concurrency: ", output, flags=re.M)[1:]:
        concurrency = int(block.split(None, 1)[0])
        client, _, server = block.partition("  Server:")
        level = {"concurrency": concurrency, "stable": "Client:" in client}
        for fields, text in ((CLIENT_FIELDS, client), (SERVER_FIELDS, server)):
            for key, pattern in fields.items():
                match = re.search(pattern, text)
                if match:
                    level[key] = float(match.group(1)) if "." in match.group(1) else int(match.group(1))
        if level.get("execution_count"):
            level["images_per_execution"] = round(level["inference_count"] / level["execution_count"], 3)
        levels.append(level)
    return levels


def run_perf_analyzer(root: Path, binary: str, server, http: str, run: Run, attempts: int) -> Run:
    """The command (one concurrency level), repeated unchanged while its windows never
    settled, at most `attempts` times; the settled attempt is kept, else the last."""
    address = server.address if run.protocol == "grpc" else http
    command = [binary, "-m", run.model, "-i", run.protocol, "-u", address, *run.extra]
    print(f"\n=== perf_analyzer {' '.join(command[1:])}", flush=True)
    start = time.monotonic()
    for attempt in range(1, attempts + 1):
        run.attempts = attempt
        run.load_average.append(round(os.getloadavg()[0], 2))
        run.returncode, run.output = chroot_streamed(root, *command, timeout=RUN_TIMEOUT_S)
        run.levels = parse_levels(run.output)
        if UNSTABLE not in run.output:
            break  # done, or failed for another reason than noise: a repeat would not help
        print(f"--- not stable on attempt {attempt} of {attempts} (load average {run.load_average[-1]})"
              + ("; again, unchanged" if attempt < attempts else ""), flush=True)
    run.seconds = round(time.monotonic() - start, 1)
    if run.returncode is None:
        run.error = f"killed: still running after {RUN_TIMEOUT_S} s"
    elif run.returncode != 0 or not all(level["stable"] for level in run.levels):
        lines = [line.strip() for line in run.output.splitlines() if line.strip()]
        said = [line for line in lines if re.search(r"fail|error", line, re.I)] or lines
        run.error = said[-1] if said else f"exit status {run.returncode}"
    return run


def summary_table(runs: list[Run]) -> str:
    head = (f"{'run':<44}{'conc':>5}{'infer/s':>10}{'p50 us':>8}{'p99 us':>8}{'server us':>10}{'queue':>7}"
            f"{'c.input':>8}{'c.infer':>8}{'c.output':>9}{'img/exec':>9}  tries")
    rows = [head]
    for run in runs:
        for level in run.levels or [{"concurrency": "-"}]:
            if not level.get("stable"):
                rows.append(f"{run.label:<44}{level['concurrency']:>5}  {run.error or 'not stable'}")
                continue
            rows.append(f"{run.label:<44}{level['concurrency']:>5}{level['throughput_infer_per_s']:>10.1f}"
                        f"{level['p50_latency_us']:>8}{level['p99_latency_us']:>8}"
                        f"{level.get('avg_request_latency_us', 0):>10}{level.get('queue_us', 0):>7}"
                        f"{level.get('compute_input_us', 0):>8}{level.get('compute_infer_us', 0):>8}"
                        f"{level.get('compute_output_us', 0):>9}{level.get('images_per_execution', 0):>9}"
                        f"  {run.attempts}")
    return "\n".join(rows)


def ratios(runs: list[Run]) -> dict:
    """HTTP against gRPC per model, fixed batch against dynamic per front end (throughput at
    concurrency 1): from consecutive runs, each with its load average beside it in the JSON."""
    rate = {(r.model, r.protocol): r.levels[0].get("throughput_infer_per_s")
            for r in runs if not r.extra and r.levels and r.levels[0].get("stable")}
    out = {}
    for model in (DYNAMIC, FIXED):
        if rate.get((model, "http")) and rate.get((model, "grpc")):
            out[f"{model} http/grpc throughput"] = round(rate[(model, "http")] / rate[(model, "grpc")], 3)
    for protocol in ("grpc", "http"):
        if rate.get((FIXED, protocol)) and rate.get((DYNAMIC, protocol)):
            out[f"{protocol} batch1/dynamic throughput"] = round(rate[(FIXED, protocol)] / rate[(DYNAMIC, protocol)], 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where the {SUITE} root and the wheel are kept (default: {DEFAULT_CACHE})")
    parser.add_argument("--mirror", default=MIRROR, help=f"Debian mirror for debootstrap (default: {MIRROR})")
    parser.add_argument("--perf-analyzer-version", default=VERSION, metavar="VERSION",
                        help=f"perf-analyzer release from PyPI (default: {VERSION})")
    parser.add_argument("--models", help="models directory; the two models are written there if missing "
                                         "(default: a temporary one)")
    parser.add_argument("--attempts", type=int, default=3,
                        help="runs of the same command when the windows never settle (default: 3)")
    parser.add_argument("--only", choices=("defaults", "sweep"),
                        help="run only the default runs or only the concurrency sweep, e.g. to repeat what the "
                             "machine's noise spoiled (default: both)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    args = parser.parse_args()
    if args.attempts < 1:
        parser.error(f"--attempts must be at least 1, got {args.attempts}")
    try:
        root, binary, facts = prepare(args.cache.expanduser(), args.mirror, args.perf_analyzer_version)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    models = models_dir_with((DYNAMIC,), args.models)
    if not (models / f"{FIXED}.onnx").exists():
        fixed_batch_copy(models / f"{DYNAMIC}.onnx", models / f"{FIXED}.onnx")
    server = start_server(models, "--http-port", "0")
    http = server.http_address()
    print(f"server: gRPC {server.address}, HTTP {http}, models in {models}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    runs = [] if args.only == "sweep" else [Run(model, protocol) for model in (DYNAMIC, FIXED)
                                             for protocol in ("grpc", "http")]
    if args.only != "defaults":  # concurrency 2 to 4 (1 is the default run), one level per command,
        runs += [Run(DYNAMIC, "grpc", ["--concurrency-range", str(n)]) for n in SWEEP]  # each repeated alone
    try:
        for run in runs:
            run_perf_analyzer(root, binary, server, http, run, args.attempts)
    finally:
        code = server.stop()
    print("\n" + summary_table(runs))
    figures = {**facts, "cores": os.cpu_count(), "server_exit": code, "ratios": ratios(runs),
               "runs": [{**asdict(r), "output": r.output.splitlines()} for r in runs]}
    for key, value in figures["ratios"].items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if all(r.returncode == 0 and not r.error for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
