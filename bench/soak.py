"""A bounded soak: concurrent clients mixing both APIs, valid and invalid requests and
batch sizes 1 to 256, against a server in its own process on loopback. Every answer is
checked against in-process onnxruntime; every status against the one the request earns.

    python bench/soak.py [--clients 16] [--seconds 60] [--json out.json]

Prints requests served, statuses, p50/p99 latency and the server's RSS at start and end.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from bench.server_process import models_dir_with, rss_mib, start_server  # noqa: E402
from bench.figures import report  # noqa: E402

MODELS = ("lenet5-mnist", "lenet5-fashion-mnist")
MAX_REQUESTS_PER_CLIENT = 100_000
INVALID_SHARE = 0.2


@dataclass
class SoakResult:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    wrong_answers: int = 0
    latencies: list[float] = field(default_factory=list)
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_max_mib: float = 0.0
    rss_half_mib: float = 0.0  # halfway through: growth after this point would be a leak
    seconds: float = 0.0

    def summary(self) -> dict:
        lat = np.array(self.latencies or [0.0]) * 1000
        return {"requests": self.requests, "statuses": dict(self.statuses), "unexpected": self.unexpected[:10],
                "unexpected_count": len(self.unexpected), "wrong_answers": self.wrong_answers,
                "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "rss_start_mib": self.rss_start_mib, "rss_end_mib": self.rss_end_mib,
                "rss_max_mib": self.rss_max_mib, "rss_half_mib": self.rss_half_mib, "seconds": self.seconds,
                "requests_per_s": self.requests / self.seconds if self.seconds else 0.0}


class Workload:
    """Real test images and the logits in-process onnxruntime gives for them."""

    def __init__(self, models_dir: Path, images: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        self.images = images
        self.expected = {}
        for name in MODELS:
            sess = ort.InferenceSession(str(models_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"])
            self.expected[name] = sess.run(["logits"], {"input": images[name]})[0]

    def pick(self, rng: random.Random) -> tuple[str, np.ndarray, np.ndarray]:
        name = rng.choice(MODELS)
        n = rng.choice([1, 1, 2, 7, 16, 64, 256, rng.randint(1, 256)])
        start = rng.randrange(0, len(self.images[name]) - n + 1)
        return name, self.images[name][start : start + n], self.expected[name][start : start + n]


def invalid_request(rng: random.Random, api: str, x: np.ndarray, name: str):
    """A request with one mistake, and the status it must earn."""
    from serve.gen import predictor_pb2 as pb
    from serve.gen import grpc_service_pb2 as service_pb2

    # NaN only for Predict: ModelInfer passes every value to the model, as Triton does.
    mistake = rng.choice(["model", "shape", "bytes", "empty"] + (["nan"] if api == "predictor" else []))
    data, shape, model = x.tobytes(), list(x.shape), name
    if mistake == "model":
        model = "no-such-model"
    elif mistake == "shape":
        shape = [len(x), x.shape[1] + 1, *x.shape[2:]]  # one channel too many
    elif mistake == "bytes":
        data = data[:-3]
    elif mistake == "nan":
        bad = x.copy()
        bad.flat[rng.randrange(bad.size)] = np.nan
        data = bad.tobytes()
    else:
        shape, data = [0, *x.shape[1:]], b""
    code = grpc.StatusCode.NOT_FOUND if mistake == "model" else grpc.StatusCode.INVALID_ARGUMENT
    if api == "predictor":
        return pb.PredictRequest(model=model, tensor=pb.Tensor(shape=shape, dtype=pb.DTYPE_FLOAT32, data=data)), code
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP32", shape=shape)
    request.raw_input_contents.append(data)
    return request, code


def client_loop(address: str, workload: Workload, seconds: float, seed: int, result: SoakResult,
                lock: threading.Lock) -> None:
    from serve.gen import predictor_pb2 as pb
    from serve.gen import predictor_pb2_grpc
    from serve.gen import grpc_service_pb2 as service_pb2, grpc_service_pb2_grpc as service_pb2_grpc

    rng = random.Random(seed)
    with grpc.insecure_channel(address) as channel:
        predictor = predictor_pb2_grpc.PredictorStub(channel)
        kserve = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        end = time.monotonic() + seconds
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= end:
                break
            api = rng.choice(["predictor", "kserve"])
            name, x, expected = workload.pick(rng)
            if rng.random() < INVALID_SHARE:
                request, want = invalid_request(rng, api, x, name)
            elif api == "predictor":
                request, want = pb.PredictRequest(model=name, tensor=pb.Tensor(
                    shape=list(x.shape), dtype=pb.DTYPE_FLOAT32, data=x.tobytes())), grpc.StatusCode.OK
            else:
                request = service_pb2.ModelInferRequest(model_name=name)
                request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
                request.raw_input_contents.append(x.tobytes())
                want = grpc.StatusCode.OK
            call = predictor.Predict if api == "predictor" else kserve.ModelInfer
            start = time.perf_counter()
            try:
                response, code = call(request, timeout=30), grpc.StatusCode.OK
            except grpc.RpcError as e:
                response, code = None, e.code()
            elapsed = time.perf_counter() - start
            wrong = False
            if code == grpc.StatusCode.OK and want == grpc.StatusCode.OK:
                if api == "predictor":
                    logits = np.array([p.logits for p in response.predictions], np.float32)
                else:
                    logits = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(len(x), -1)
                wrong = logits.shape != expected.shape or not np.allclose(logits, expected, atol=1e-4, rtol=0)
            with lock:
                result.requests += 1
                result.statuses[code.name] += 1
                result.latencies.append(elapsed)
                result.wrong_answers += wrong
                if code != want:
                    result.unexpected.append(f"{api} wanted {want.name}, got {code.name}")


def run_soak(address: str, pid: int, workload: Workload, clients: int, seconds: float) -> SoakResult:
    result, lock = SoakResult(), threading.Lock()
    warm = threading.Thread(target=client_loop, args=(address, workload, 2.0, 999, SoakResult(), lock))
    warm.start()
    warm.join(60)
    result.rss_start_mib = result.rss_max_mib = rss_mib(pid)
    threads = [threading.Thread(target=client_loop, args=(address, workload, seconds, i, result, lock))
               for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        rss = rss_mib(pid)
        result.rss_max_mib = max(result.rss_max_mib, rss)
        if not result.rss_half_mib and time.monotonic() - start >= seconds / 2:
            result.rss_half_mib = rss
    for t in threads:
        t.join(60)
    result.seconds = time.monotonic() - start
    result.rss_end_mib = rss_mib(pid)
    return result


def real_images() -> dict[str, np.ndarray]:
    from zoo.data import load, normalize

    out = {}
    for name in MODELS:
        split = load(name.split("-", 1)[1], "test", progress=False)
        out[name] = normalize(split.images[:2048], split.info)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    parser.add_argument("--seconds", type=float, default=60.0, help="soak duration (default: 60)")
    parser.add_argument("--models", help="models directory (default: export lenet5 to a temp dir)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    args = parser.parse_args()
    models_dir = models_dir_with(MODELS, args.models)
    workload = Workload(models_dir, real_images())
    server = start_server(models_dir)
    try:
        result = run_soak(server.address, server.pid, workload, args.clients, args.seconds)
    finally:
        code = server.stop()
    figures = result.summary()
    print(f"{figures['requests']:,} requests in {figures['seconds']:.1f} s ({figures['requests_per_s']:,.0f}/s) "
          f"from {args.clients} clients")
    print("statuses: " + ", ".join(f"{k} {v:,}" for k, v in sorted(figures["statuses"].items())))
    print(f"unexpected statuses: {figures['unexpected_count']}; wrong answers: {figures['wrong_answers']}")
    print(f"latency p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms")
    print(f"server RSS: {figures['rss_start_mib']:.1f} MiB at start (after warm-up), "
          f"{figures['rss_half_mib']:.1f} MiB halfway, {figures['rss_end_mib']:.1f} MiB at end, "
          f"{figures['rss_max_mib']:.1f} MiB at most; exit code {code}")
    report(figures, args.json)
    ok = figures["unexpected_count"] == 0 and figures["wrong_answers"] == 0 and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
