"""What warm-up buys: the first 20 requests after the server says it is ready, with warm-up
(the default) and without (--no-warmup), against the same server's steady state, in one run.

    python bench/warmup_bench.py [--models lenet5-mnist,resnet-mini-mnist] [--batches 1,64] [--rounds 3]

For each model, batch size and round, a fresh `python -m serve` starts (warm-up on, then
off, then on ...); one lean gRPC client, its channel connected and its health check
answered before the first request, sends the same ModelInfer 20 times one after the other
once the server is ready, then 300 more: the steady state. Each figure is the first 20's p50 and p99 over the steady state's
p50 (1.0: no first-request penalty).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.server_process import models_dir_with, start_server  # noqa: E402
from bench.figures import report  # noqa: E402

FIRST = 20
STEADY = 300


def request_bytes(model: str, shape: tuple[int, ...]) -> bytes:
    from serve.gen import grpc_service_pb2 as kpb

    request = kpb.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP32", shape=list(shape))
    request.raw_input_contents.append(np.zeros(shape, np.float32).tobytes())
    return request.SerializeToString()


def first_and_steady(address: str, payload: bytes) -> tuple[list[float], list[float]]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(address)
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)  # connected
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    latencies = []
    for _ in range(FIRST + STEADY):
        start = time.perf_counter()
        call(payload, timeout=30)
        latencies.append(time.perf_counter() - start)
    channel.close()
    return latencies[:FIRST], latencies[FIRST:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lenet5-mnist,resnet-mini-mnist", help="comma-separated shipped models")
    parser.add_argument("--dir", help="models directory (default: a temporary one, exported there)")
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes (default: 1,64)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="server starts per model, batch size and setting (default: 3)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    names = tuple(args.models.split(","))
    models = models_dir_with(names, args.dir)
    figures: dict = {}
    for name, batch in ((n, int(b)) for n in names for b in args.batches.split(",")):
        import onnxruntime as ort

        shape = tuple(batch if i == 0 else d for i, d in enumerate(
            ort.InferenceSession(str(models / f"{name}.onnx"), providers=["CPUExecutionProvider"])
            .get_inputs()[0].shape))
        payload = request_bytes(name, shape)
        single = Path(models) / f"only-{name}" / f"{name}.onnx"  # a server of this model alone
        single.parent.mkdir(exist_ok=True)
        if not single.exists():
            single.write_bytes((models / f"{name}.onnx").read_bytes())
        runs: dict[str, list[dict]] = {"warmup": [], "no_warmup": []}
        for i in range(args.rounds * 2):
            setting = "warmup" if i % 2 == 0 else "no_warmup"
            server = start_server(single.parent, *([] if setting == "warmup" else ["--no-warmup"]))
            try:
                first, steady = first_and_steady(server.address, payload)
            finally:
                server.stop()
            base = float(np.percentile(steady, 50))
            runs[setting].append({"first20_p50_ms": 1000 * float(np.percentile(first, 50)),
                                  "first20_p99_ms": 1000 * float(np.percentile(first, 99)),
                                  "first_ms": 1000 * first[0], "steady_p50_ms": 1000 * base,
                                  "first20_p50_over_steady": float(np.percentile(first, 50)) / base,
                                  "first20_p99_over_steady": float(np.percentile(first, 99)) / base})
        summary = {setting: {key: float(np.median([r[key] for r in rs])) for key in rs[0]}
                   for setting, rs in runs.items()}
        figures[f"{name} batch {batch}"] = {"rounds": runs, "median": summary}
        for setting in ("warmup", "no_warmup"):
            m = summary[setting]
            print(f"{name} batch {batch}, {setting.replace('_', ' ')}: first request {m['first_ms']:.2f} ms; first 20 p50 "
                  f"{m['first20_p50_ms']:.2f} ms ({m['first20_p50_over_steady']:.2f}x steady), p99 "
                  f"{m['first20_p99_ms']:.2f} ms ({m['first20_p99_over_steady']:.2f}x); steady p50 "
                  f"{m['steady_p50_ms']:.2f} ms", flush=True)
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
