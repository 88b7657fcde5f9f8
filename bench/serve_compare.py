"""Two checkouts' servers side by side, in one run: batch-1 p50 (one lean gRPC client
sending the same ModelInfer bytes to both in turn) and batch-64 images/s with 4
tritonclient clients (rounds alternating between the two), as ratios this / other.

    python bench/serve_compare.py --other ../before-checkout [--rounds 4] [--seconds 3] [--json out.json]
    python bench/serve_compare.py --other ../a-checkout-with-workers --other-args "--workers 1"

Both servers run `python -m serve` from their own checkout with this interpreter, over the
same exported model, with the same flags; the machine's noise falls on both alike.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.serve_bench import MODEL, batch1_request_bytes, percentile_ms, run_clients  # noqa: E402
from bench.server_process import ADDRESS, ServerProcess, in_client_process, models_dir_with  # noqa: E402
from bench.figures import report  # noqa: E402


def start_in(checkout: Path, models: Path, *extra: str) -> ServerProcess:
    proc = subprocess.Popen([sys.executable, "-m", "serve", "--models", str(models), "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=checkout,
                            env={**os.environ, "PYTHONPATH": str(checkout)})
    server = ServerProcess(proc)
    for line in proc.stdout:
        server.lines.append(line)
        if match := ADDRESS.search(line):
            server.address = match.group(1)
            import threading

            server._reader = threading.Thread(target=lambda: server.lines.extend(proc.stdout), daemon=True)
            server._reader.start()
            return server
    raise RuntimeError(f"the server in {checkout} did not start:\n{server.output}")


def alternating_p50(addresses: dict[str, str], count: int, out_queue) -> None:
    import grpc

    payload = batch1_request_bytes()
    calls = {name: grpc.insecure_channel(address).unary_unary("/inference.GRPCInferenceService/ModelInfer")
             for name, address in addresses.items()}
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(count + 50):
        for name, call in calls.items():
            start = time.perf_counter()
            call(payload, timeout=10)
            if i >= 50:
                latencies[name].append(time.perf_counter() - start)
    out_queue.put(latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", required=True, help="the other checkout (its repository root)")
    parser.add_argument("--models", help="models directory (default: a temporary one, lenet5-mnist exported)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating throughput rounds (default: 4)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput run (default: 3)")
    parser.add_argument("--requests", type=int, default=2000, help="batch-1 requests to each (default: 2000)")
    parser.add_argument("--this-args", default="--workers 1",
                        help="extra flags for this checkout's server (default: '--workers 1': checkouts before "
                             "worker processes ran one process, and there --workers meant handler threads)")
    parser.add_argument("--other-args", default="",
                        help="extra flags for the other checkout's server (default: none; '--workers 1' when it "
                             "has worker processes too, or its default, --workers auto, runs one a CPU)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    models = models_dir_with((MODEL,), args.models)
    servers = {"this": start_in(ROOT, models, *shlex.split(args.this_args)),
               "other": start_in(Path(args.other).resolve(), models, *shlex.split(args.other_args))}
    try:
        latencies = in_client_process(alternating_p50, {n: s.address for n, s in servers.items()}, args.requests)
        p50 = {name: percentile_ms(v, 50) for name, v in latencies.items()}
        rounds: dict[str, list[float]] = {name: [] for name in servers}
        for i in range(args.rounds):
            for name in (("this", "other") if i % 2 == 0 else ("other", "this")):
                rounds[name].append(run_clients(servers[name].address, 4, 64, args.seconds)["images_per_s"])
    finally:
        for server in servers.values():
            server.stop()
    figures = {
        "p50_ms_batch1": p50, "images_per_s_batch64_4clients": rounds,
        "ratio_p50_this_over_other": p50["this"] / p50["other"],
        "ratio_images_per_s_this_over_other": float(np.median([t / o for t, o in zip(rounds["this"], rounds["other"])])),
    }
    print(f"batch-1 p50: this {p50['this']:.3f} ms, other {p50['other']:.3f} ms "
          f"(this / other {figures['ratio_p50_this_over_other']:.3f}); batch 64 x 4 clients img/s: this "
          + ", ".join(f"{x:,.0f}" for x in rounds["this"]) + "; other " + ", ".join(f"{x:,.0f}" for x in rounds["other"])
          + f" (median ratio this / other {figures['ratio_images_per_s_this_over_other']:.3f})")
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
