"""What tracing costs: batch-1 p50 over gRPC and HTTP with tracing off, with it on
(--trace-otlp-endpoint, every request sampled and its spans sent to a real OTLP/HTTP
receiver), and with the code from before tracing existed, all in one run, as ratios.

    python bench/trace_overhead.py [--before REF] [--requests 2000] [--json out.json]

Three `python -m serve` processes over the same exported model with the same flags:
`before` runs the `--before` commit's code (default: the parent of the commit that added
serve/core/tracing.py; `--before none` leaves it out), `off` and `on` this checkout's. One
lean client process sends the same batch-1 ModelInfer (raw gRPC bytes, then KServe REST with
a binary tensor over one keep-alive connection), each with a sampled W3C traceparent, to
the three in turn, so the machine's noise falls on all alike. The receiver counts the spans
it got, so `on` is seen to export them. Target: off / before within noise (about 1.00; no
cost when off).
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import multiprocessing as mp
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
from bench.server_process import models_dir_with  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="", help="the commit to compare with (default: the one before tracing); "
                                                     "none: compare off with on only")
    parser.add_argument("--models", help="models directory (default: a temporary one, lenet5-mnist exported)")
    parser.add_argument("--requests", type=int, default=2000, help="batch-1 requests to each server per protocol "
                                                                   "(default: 2000)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    models = models_dir_with((MODEL,), args.models)
    receiver = SpanCounter()
    flags = ("--http-port", "0")
    servers = {}
    try:
        if args.before != "none":
            checkout, commit = before_checkout(args.before)
            servers["before"] = start_in(checkout, models, *flags)
        servers["off"] = start_in(ROOT, models, *flags)
        servers["on"] = start_in(ROOT, models, *flags, "--trace-otlp-endpoint", f"http://127.0.0.1:{receiver.server_port}")
        addresses = {name: (s.address, s.http_address()) for name, s in servers.items()}
        ctx = mp.get_context("spawn")
        out_queue = ctx.Queue()
        client = ctx.Process(target=alternating, args=(addresses, args.requests, out_queue))
        client.start()
        latencies = out_queue.get(timeout=900)
        client.join(30)
    finally:
        for server in servers.values():
            server.stop()  # `on` sends its last spans as it stops
        receiver.shutdown()
    spans = receiver.spans
    p50 = {protocol: {name: percentile_ms(v, 50) for name, v in by.items()} for protocol, by in latencies.items()}
    p99 = {protocol: {name: percentile_ms(v, 99) for name, v in by.items()} for protocol, by in latencies.items()}
    figures: dict = {"requests_per_server_and_protocol": args.requests, "p50_ms_batch1": p50, "p99_ms_batch1": p99,
                     "spans_exported_by_on": spans}
    if "before" in servers:
        figures["before_commit"] = commit
    for protocol, by in p50.items():
        figures[f"ratio_p50_{protocol}_on_over_off"] = by["on"] / by["off"]
        if "before" in by:
            figures[f"ratio_p50_{protocol}_off_over_before"] = by["off"] / by["before"]
    for protocol, by in p50.items():
        line = ", ".join(f"{name} {ms:.3f} ms" for name, ms in by.items())
        ratios = f"on / off {figures[f'ratio_p50_{protocol}_on_over_off']:.3f}"
        if "before" in by:
            ratios = f"off / before {figures[f'ratio_p50_{protocol}_off_over_before']:.3f}, " + ratios
        print(f"batch-1 p50 over {protocol}: {line} ({ratios})")
    expected = 5 * 2 * (args.requests + WARMUP)  # 5 spans per request, both protocols
    print(f"spans the receiver got from `on`: {spans:,} (5 per request: {expected:,})"
          + (f"; before = {commit}" if "before" in servers else ""))
    print(json.dumps(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
