"""What tracing costs: batch-1 p50 over gRPC and HTTP with tracing off, with it on
(--trace-otlp-endpoint, every request sampled and its spans sent to a real OTLP/HTTP
receiver), and with the code from before tracing existed, all in one run, as ratios.

    python bench/trace_overhead.py [--before REF] [--rounds 3] [--requests 1000] [--json out.json]

Each round starts three `python -m serve` processes over the same exported model with the
same flags: `before` runs the `--before` commit's code (default: the parent of the commit that added
serve/core/tracing.py; `--before none` leaves it out), `off` and `on` this checkout's. One
lean client process sends the same batch-1 ModelInfer (raw gRPC bytes, then KServe REST with
a binary tensor over one keep-alive connection), each with a sampled W3C traceparent, to
the three in turn, so the machine's noise falls on all alike; each figure is the median of
the rounds' ratios (fresh processes each round, as one process can be luckier than another
for its whole life). The receiver counts the spans it got, so `on` is seen to export them.
Target: off / before within noise (about 1.00; no cost when off).
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.serve_bench import MODEL, batch1_request_bytes, percentile_ms  # noqa: E402
from bench.serve_compare import start_in  # noqa: E402
from bench.server_process import in_client_process, models_dir_with  # noqa: E402
from bench.figures import report  # noqa: E402

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WARMUP = 50


class SpanCounter(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint on loopback that counts the spans posted to it."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.bodies: list[bytes] = []  # parsed after the run, so the parsing takes no CPU from the servers
        self._parse = ExportTraceServiceRequest.FromString
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                counter.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def spans(self) -> int:
        return sum(len(s.spans) for body in self.bodies for r in self._parse(body).resource_spans for s in r.scope_spans)


def rest_request() -> tuple[bytes, dict[str, str]]:
    """The batch-1 KServe REST request with a binary tensor, as tritonclient.http sends it."""
    x = np.zeros((1, 1, 28, 28), np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                     "parameters": {"binary_data_size": len(x)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return header + x, {"Inference-Header-Content-Length": str(len(header)), "traceparent": TRACEPARENT,
                        "Content-Type": "application/octet-stream"}


def alternating(addresses: dict[str, tuple[str, str]], count: int, out_queue) -> None:
    """One client: each request to every server in turn (the order rotating), gRPC first, then HTTP."""
    import grpc

    payload = batch1_request_bytes()
    metadata = (("traceparent", TRACEPARENT),)
    grpc_calls = {name: grpc.insecure_channel(g).unary_unary("/inference.GRPCInferenceService/ModelInfer")
                  for name, (g, _) in addresses.items()}
    body, headers = rest_request()
    connections = {name: http.client.HTTPConnection(*h.rsplit(":", 1), timeout=10) for name, (_, h) in addresses.items()}

    def http_call(connection):
        connection.request("POST", f"/v2/models/{MODEL}/infer", body, headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status

    latencies = {protocol: {name: [] for name in addresses} for protocol in ("grpc", "http")}
    names = list(addresses)
    for protocol in ("grpc", "http"):
        for i in range(count + WARMUP):
            for name in names[i % len(names):] + names[:i % len(names)]:  # each first in turn: no place favoured
                start = time.perf_counter()
                if protocol == "grpc":
                    grpc_calls[name](payload, metadata=metadata, timeout=10)
                else:
                    http_call(connections[name])
                if i >= WARMUP:
                    latencies[protocol][name].append(time.perf_counter() - start)
    out_queue.put(latencies)


def before_checkout(ref: str) -> tuple[Path, str]:
    """The code of `ref` (default: before tracing) in a temporary directory, and its commit."""
    git = ["git", "-C", str(ROOT)]
    if ref == "":
        added = subprocess.run(git + ["log", "-1", "--diff-filter=A", "--format=%H", "HEAD", "--", "serve/core/tracing.py"],
                               capture_output=True, text=True, check=True).stdout.strip()
        ref = f"{added}^"
    commit = subprocess.run(git + ["rev-parse", "--short", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    out = Path(tempfile.mkdtemp(prefix="trace-before-"))
    archive = subprocess.run(git + ["archive", commit, "serve"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out, commit


def one_round(models: Path, before: Path | None, receiver_port: int, requests: int) -> dict:
    """Fresh servers (before, off, on), one client alternating between them: the latencies."""
    flags = ("--http-port", "0")
    servers = {}
    try:
        if before is not None:
            servers["before"] = start_in(before, models, *flags)
        servers["off"] = start_in(ROOT, models, *flags)
        servers["on"] = start_in(ROOT, models, *flags, "--trace-otlp-endpoint", f"http://127.0.0.1:{receiver_port}")
        addresses = {name: (s.address, s.http_address()) for name, s in servers.items()}
        return in_client_process(alternating, addresses, requests, timeout=900)
    finally:
        for server in servers.values():
            server.stop()  # `on` sends its last spans as it stops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="", help="the commit to compare with (default: the one before tracing); "
                                                     "none: compare off with on only")
    parser.add_argument("--models", help="models directory (default: a temporary one, lenet5-mnist exported)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each with fresh server processes (default: 3)")
    parser.add_argument("--requests", type=int, default=1000, help="batch-1 requests to each server per protocol "
                                                                   "and round (default: 1000)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    models = models_dir_with((MODEL,), args.models)
    before, commit = before_checkout(args.before) if args.before != "none" else (None, "")
    receiver = SpanCounter()
    try:
        rounds = [one_round(models, before, receiver.server_port, args.requests) for _ in range(args.rounds)]
    finally:
        receiver.shutdown()
    spans = receiver.spans
    names = list(rounds[0]["grpc"])
    figures: dict = {"rounds": args.rounds, "requests_per_server_protocol_and_round": args.requests,
                     "spans_exported_by_on": spans, **({"before_commit": commit} if commit else {})}
    for protocol in ("grpc", "http"):
        p50 = [{name: percentile_ms(r[protocol][name], 50) for name in names} for r in rounds]
        p99 = [{name: percentile_ms(r[protocol][name], 99) for name in names} for r in rounds]
        figures[f"p50_ms_{protocol}"], figures[f"p99_ms_{protocol}"] = p50, p99
        pairs = [("on", "off")] + ([("off", "before")] if before is not None else [])
        for this, other in pairs:
            ratios = [r[this] / r[other] for r in p50]
            figures[f"ratio_p50_{protocol}_{this}_over_{other}"] = float(np.median(ratios))
            figures[f"ratios_p50_{protocol}_{this}_over_{other}_by_round"] = ratios
        print(f"batch-1 p50 over {protocol}, by round: " + "; ".join(
            ", ".join(f"{name} {ms:.3f}" for name, ms in r.items()) + " ms" for r in p50))
        print("  median of the rounds' ratios: " + ", ".join(
            f"{this} / {other} {figures[f'ratio_p50_{protocol}_{this}_over_{other}']:.3f}" for this, other in pairs)
            + "; p99 " + ", ".join(f"{name} {float(np.median([r[name] for r in p99])):.2f}" for name in names) + " ms")
    expected = 5 * 2 * (args.requests + WARMUP) * args.rounds  # 5 spans per request, both protocols
    print(f"spans the receiver got from `on`: {spans:,} (5 per request: {expected:,})"
          + (f"; before = {commit}" if commit else ""))
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
