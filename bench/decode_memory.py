"""Image-decoding memory under hostile load: 32 PNG bombs at once (4096 x 4096 RGBA at 16
bits: a few hundred KB each, 128 MiB decoded), then 32 of the largest images the default
limits accept (2896 x 2896 RGBA, 40 MiB to decode), sent concurrently to a server in its own
process, its RSS sampled every 5 ms. The baseline, in the same run: a server with the byte
limits lifted, sent 8 of the bombs (more would take gigabytes).

    python bench/decode_memory.py [--clients 32] [--json out.json]

Target: the guarded server under 1 GB (1,000 MB) RSS at its peak, every request refused or
answered.
"""

from __future__ import annotations

import argparse
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from bench.server_process import models_dir_with, rss_mib, start_server  # noqa: E402
from bench.figures import report  # noqa: E402

MODEL = "lenet5-mnist"
TARGET_MB = 1000
UNLIMITED = ("--max-decode-mib", "100000", "--decode-budget-mib", "100000")


def zero_png(width: int, height: int, bit_depth: int) -> bytes:
    """A real RGBA PNG of zeros, as small as zlib makes it: decodes to width x height x 4
    samples of bit_depth bits."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\0" * (1 + width * 4 * bit_depth // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, 6, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def burst(address: str, pid: int, image: bytes, clients: int) -> dict:
    """`clients` concurrent Predict requests of one image each; statuses and peak RSS."""
    from serve.gen import predictor_pb2 as pb
    from serve.gen import predictor_pb2_grpc

    codes: Counter = Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    done = threading.Event()
    peak = [rss_mib(pid)]

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.005)

    def client():
        with grpc.insecure_channel(address) as channel:
            stub = predictor_pb2_grpc.PredictorStub(channel)
            start.wait()
            try:
                stub.Predict(pb.PredictRequest(model=MODEL, images=pb.EncodedImages(images=[image])), timeout=120)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
        with lock:
            codes[code] += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    began = time.monotonic()
    start.wait()
    for t in threads:
        t.join(180)
    done.set()
    sampler.join()
    return {"statuses": dict(codes), "peak_rss_mib": peak[0], "seconds": time.monotonic() - began}


def measure(models_dir: Path, extra: tuple[str, ...], bursts: list[tuple[str, bytes, int]]) -> dict:
    server = start_server(models_dir, *extra)
    try:
        figures = {"rss_start_mib": rss_mib(server.pid)}
        for name, image, clients in bursts:
            figures[name] = burst(server.address, server.pid, image, clients)
    finally:
        figures["exit_code"] = server.stop()
    figures["traceback_in_log"] = "Traceback" in server.output
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32, help="concurrent requests per burst (default: 32)")
    parser.add_argument("--models", help="models directory (default: export lenet5 to a temp dir)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    args = parser.parse_args()
    models_dir = models_dir_with((MODEL,), args.models)
    bomb, largest = zero_png(4096, 4096, 16), zero_png(2896, 2896, 8)
    print(f"bomb: {len(bomb) / 1024:.0f} KB file, 4096x4096 RGBA 16-bit; largest accepted: "
          f"{len(largest) / 1024:.0f} KB file, 2896x2896 RGBA 8-bit")
    guarded = measure(models_dir, (), [("bombs", bomb, args.clients), ("largest_accepted", largest, args.clients)])
    unguarded = measure(models_dir, UNLIMITED, [("bombs", bomb, 8)])
    peak = max(guarded["bombs"]["peak_rss_mib"], guarded["largest_accepted"]["peak_rss_mib"])
    figures = {"guarded": guarded, "unguarded_8_bombs": unguarded,
               "guarded_peak_mb": peak * 1.048576, "target_mb": TARGET_MB,
               "ratio_guarded_32_over_unguarded_8": peak / unguarded["bombs"]["peak_rss_mib"]}
    for name in ("bombs", "largest_accepted"):
        b = guarded[name]
        print(f"guarded, {args.clients} {name}: {b['statuses']}, peak RSS {b['peak_rss_mib']:.0f} MiB "
              f"(from {guarded['rss_start_mib']:.0f} MiB at start)")
    u = unguarded["bombs"]
    print(f"limits lifted, 8 bombs: {u['statuses']}, peak RSS {u['peak_rss_mib']:.0f} MiB "
          f"(from {unguarded['rss_start_mib']:.0f} MiB)")
    print(f"guarded peak {figures['guarded_peak_mb']:.0f} MB (target < {TARGET_MB} MB); "
          f"{figures['ratio_guarded_32_over_unguarded_8']:.2f}x the unguarded server's peak with 8 bombs")
    report(figures, args.json)
    answered = all(set(guarded[n]["statuses"]) <= {"OK", "RESOURCE_EXHAUSTED"} for n in ("bombs", "largest_accepted"))
    ok = answered and figures["guarded_peak_mb"] < TARGET_MB and guarded["exit_code"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
