"""Serving benchmark, all in one run on loopback, with tritonclient in separate client
processes:

  1. in-process onnxruntime: the limit;
  2. a bare grpcio echo server with the same payload as a batch-1 ModelInfer: the
     transport floor, measured by one lean client alternating its requests between the echo
     and our server, so both see the same machine noise;
  3. our server (python -m serve --workers 1, its own process): sequential p50/p99 latency
     at batch 1 (that paired measurement, with each server's CPU time per request beside the
     echo server's over the same requests, and with tritonclient),
     and requests/s and images/s at batch 1 and 64 with 1, 4 and 16 concurrent clients,
     with dynamic batching on, and batch 1 at 16 clients with it off;
  4. HTTP against gRPC on that server, tritonclient.http in binary (its default) and JSON
     modes against tritonclient.grpc: batch-1 p50 with one client alternating the three,
     and batch-64 images/s with 4 clients in alternating rounds; and JSON against binary
     tensors with bodies encoded beforehand (the client's own JSON encoding, about 59 ms
     per 64 images in tritonclient, would hide the server's): the server's CPU per request
     and the p50 (`--only http`: just this part; `--only json`: just the JSON one).
  `--only latency`: 1 to 3 alone (the p50 and CPU-per-request targets).
  `--workers 1,2`: instead, the server with 1 and with 2 worker processes, in alternating
     rounds: req/s at batch 1 x 16 clients, img/s at batch 64 x 4 clients, the ratio 2 / 1,
     and how much of the CPUs the server and the clients took.

    python bench/serve_bench.py [--models DIR] [--device cpu|cuda] [--seconds 3] [--json out.json]
                                [--only http|json|latency] [--workers 1,2]

Targets: p50 at batch 1 within 1.3x of (echo p50 + in-process p50), server CPU per batch-1
request at most 1.5x the echo server's; batch 64 with 4 clients at least 50 % of in-process
images/s; batching raises batch-1 throughput at 16 clients; HTTP binary p50 within 1.5x of
gRPC's, and its batch-64 images/s at least 70 % of gRPC's; JSON at most 8 ms of server CPU
per 64-image request, and its batch-1 p50 within 1.5x of binary's; 2 workers / 1 at least
1.3x req/s at batch 1 on 2 cores (the clients share them), 6x with 8 workers on 16 cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent import futures
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from bench.server_process import (cpu_seconds, in_client_process, models_dir_with, start_server,  # noqa: E402
                                  tree_cpu_seconds)
from bench.figures import report  # noqa: E402
from serve.cpus import available_cpus  # noqa: E402
from zoo.records import INPUT_SHAPE  # noqa: E402  (the zoo's models' (C, H, W); imports no torch)

# The served model; an environment variable so that spawned client processes see --model too.
MODEL = os.environ.setdefault("ZOO_BENCH_MODEL", "lenet5-mnist")
SEQUENTIAL_REQUESTS = 1000
MAX_REQUESTS_PER_CLIENT = 200_000  # a hard cap beside the time limit
ROUNDS = 3  # alternating rounds for the comparisons that are not measured side by side
BATCHING_ROUNDS = 6  # on/off pairs: a small effect, measured where the clients share the cores
CPUS = available_cpus()


def percentile_ms(latencies: list[float], q: float) -> float:
    return float(np.percentile(np.array(latencies) * 1000, q))


def in_process_session(models: Path, device: str):
    """The limit: onnxruntime on the same device as the server, with its default threads."""
    from serve.core.device import make_session

    return make_session((models / f"{MODEL}.onnx").read_bytes(), device)


def in_process_images_per_s(sess, batch: int, seconds: float) -> float:
    """Images/s of back-to-back runs at `batch` for `seconds` (after one warm-up run)."""
    x = np.random.default_rng(0).standard_normal((batch, *INPUT_SHAPE), dtype=np.float32)
    sess.run(["logits"], {"input": x})
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds and count < MAX_REQUESTS_PER_CLIENT:
        sess.run(["logits"], {"input": x})
        count += 1
    return count * batch / (time.perf_counter() - start)


def in_process_p50_ms(sess, pause_s: float = 0.0) -> float:
    """p50 of sequential batch-1 runs, each after `pause_s` idle."""
    one = np.random.default_rng(0).standard_normal((1, *INPUT_SHAPE), dtype=np.float32)
    latencies = []
    for _ in range(SEQUENTIAL_REQUESTS):
        if pause_s:
            time.sleep(pause_s)
        start = time.perf_counter()
        sess.run(["logits"], {"input": one})
        latencies.append(time.perf_counter() - start)
    return percentile_ms(latencies, 50)


def in_process(sess, seconds: float) -> dict:
    return {
        "p50_ms_batch1": in_process_p50_ms(sess),
        # After 0.5 ms idle, about the gap between one client's sequential requests: what a
        # served run costs once the caches have gone cold (context, not a target).
        "p50_ms_batch1_paced": in_process_p50_ms(sess, pause_s=0.0005),
        **{f"images_per_s_batch{batch}": in_process_images_per_s(sess, batch, seconds) for batch in (1, 64)},
    }


def echo_server(port_queue, stop_event) -> None:
    import grpc

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((handler,))
    port_queue.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    stop_event.wait(300)
    server.stop(0)


def batch1_request_bytes() -> bytes:
    from serve.gen import grpc_service_pb2 as service_pb2

    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=[1, *INPUT_SHAPE])
    request.raw_input_contents.append(np.zeros((1, *INPUT_SHAPE), np.float32).tobytes())
    return request.SerializeToString()


def tritonclient_call(protocol: str, address: str, batch: int):
    """A function sending one batch of random images with tritonclient: over gRPC, or over
    HTTP with binary tensors (`http`, tritonclient.http's default) or JSON (`http-json`)."""
    x = np.random.default_rng().standard_normal((batch, *INPUT_SHAPE), dtype=np.float32)
    if protocol == "grpc":
        import tritonclient.grpc as triton

        client = triton.InferenceServerClient(address)
        tensor = triton.InferInput("input", [batch, *INPUT_SHAPE], "FP32")
        tensor.set_data_from_numpy(x)
        outputs = [triton.InferRequestedOutput("logits")]
        return lambda: client.infer(MODEL, [tensor], outputs=outputs, client_timeout=10).as_numpy("logits")
    import tritonclient.http as triton

    binary = protocol == "http"
    client = triton.InferenceServerClient(address, network_timeout=10)
    tensor = triton.InferInput("input", [batch, *INPUT_SHAPE], "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput("logits", binary_data=binary)]
    return lambda: client.infer(MODEL, [tensor], outputs=outputs).as_numpy("logits")


def client_process(address: str, batch: int, seconds: float, count: int, barrier, out_queue,
                   protocol: str = "grpc") -> None:
    """One tritonclient client: `count` requests (sequential) or as many as fit in `seconds`."""
    once = tritonclient_call(protocol, address, batch)

    for _ in range(10):
        once()  # warm up the channel
    barrier.wait(60)
    latencies = []
    end = time.perf_counter() + seconds
    limit = count or MAX_REQUESTS_PER_CLIENT
    cpu = time.process_time()
    while len(latencies) < limit and (count or time.perf_counter() < end):
        start = time.perf_counter()
        once()
        latencies.append(time.perf_counter() - start)
    out_queue.put((latencies, time.process_time() - cpu))


def paired_latency(echo_address: str, server_address: str, count: int, pids: dict[str, int], out_queue) -> None:
    """One lean client alternating the same batch-1 ModelInfer bytes between the echo server
    and ours, so both latencies are taken under the same machine noise; and the CPU time
    each server process spent over the same requests."""
    import grpc

    payload = batch1_request_bytes()
    calls = {"echo": grpc.insecure_channel(echo_address).unary_unary("/bench.Echo/Echo"),
             "server": grpc.insecure_channel(server_address).unary_unary(
                 "/inference.GRPCInferenceService/ModelInfer")}
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, float] = {}
    for i in range(count + 50):
        if i == 50:  # the first 50 warm the channels up
            cpu = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
        for name, call in calls.items():
            start = time.perf_counter()
            call(payload, timeout=10)
            if i >= 50:
                latencies[name].append(time.perf_counter() - start)
    cpu = {name: tree_cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
    out_queue.put((latencies, cpu))


def run_paired(echo_address: str, server_address: str, count: int, pids: dict[str, int]) -> dict:
    latencies, cpu = in_client_process(paired_latency, echo_address, server_address, count, pids, timeout=300)
    return {name: {"p50_ms": percentile_ms(v, 50), "p99_ms": percentile_ms(v, 99), "requests": len(v),
                   "cpu_ms_per_request": 1000 * cpu[name] / len(v)}
            for name, v in latencies.items()}


def run_clients(address: str, clients: int, batch: int, seconds: float, count: int = 0,
                server_pid: int | None = None, protocol: str = "grpc") -> dict:
    """`clients` tritonclient processes at once; with `server_pid`, also the server's CPU
    time per request (Linux), which the machine's noise disturbs far less than requests/s."""
    ctx = mp.get_context("spawn")
    barrier, out_queue = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=client_process, args=(address, batch, seconds, count, barrier, out_queue, protocol))
             for _ in range(clients)]
    for p in procs:
        p.start()
    barrier.wait(120)
    server_cpu = tree_cpu_seconds(server_pid) if server_pid else 0.0
    start = time.perf_counter()
    per_client = [out_queue.get(timeout=seconds + 120) for _ in procs]
    elapsed = time.perf_counter() - start
    if server_pid:
        server_cpu = tree_cpu_seconds(server_pid) - server_cpu
    for p in procs:
        p.join(30)
    latencies = [x for lat, _ in per_client for x in lat]
    requests = len(latencies)
    client_cpu = sum(cpu for _, cpu in per_client)
    row = {"clients": clients, "batch": batch, "requests": requests, "seconds": elapsed,
           "requests_per_s": requests / elapsed, "images_per_s": requests * batch / elapsed,
           "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99),
           "client_cpu_ms_per_request": 1000 * client_cpu / requests,
           "client_share_of_cpus": client_cpu / (elapsed * CPUS)}  # of the cores this bench may use
    if server_pid:
        row["server_cpu_ms_per_request"] = 1000 * server_cpu / requests
        row["server_share_of_cpus"] = server_cpu / (elapsed * CPUS)
    return row


def workers_comparison(models: Path, counts: list[int], seconds: float, server_args: list[str]) -> dict:
    """The same server with each worker count in `counts`, all started at once and run in
    alternating rounds (order swapped every round): batch 1 x 16 clients and batch 64 x 4
    clients; the ratio of each count to the first, as the median of the rounds' ratios."""
    servers = {n: start_server(models, "--workers", str(n), *server_args) for n in counts}
    loads = {"batch1_16_clients": (16, 1, "requests_per_s"), "batch64_4_clients": (4, 64, "images_per_s")}
    runs: dict[int, dict[str, list[dict]]] = {n: {load: [] for load in loads} for n in counts}
    print(f"{'workers':>8}{'batch':>6}{'clients':>8}{'req/s':>10}{'img/s':>11}{'p50 ms':>9}"
          f"{'server CPU ms/req':>19}{'server CPUs':>13}{'client CPUs':>13}", flush=True)
    try:
        for i in range(ROUNDS):
            for n in counts if i % 2 == 0 else counts[::-1]:
                for load, (clients, batch, _) in loads.items():
                    row = run_clients(servers[n].address, clients, batch, seconds, server_pid=servers[n].pid)
                    runs[n][load].append(row)
                    print(f"{n:>8}{batch:>6}{clients:>8}{row['requests_per_s']:>10,.0f}{row['images_per_s']:>11,.0f}"
                          f"{row['p50_ms']:>9.2f}{row['server_cpu_ms_per_request']:>19.3f}"
                          f"{row['server_share_of_cpus'] * CPUS:>13.2f}{row['client_share_of_cpus'] * CPUS:>13.2f}",
                          flush=True)
    finally:
        for server in servers.values():
            server.stop()
    base = counts[0]
    ratios = {f"{n}_over_{base}": {load: float(np.median([r[key] / b[key] for r, b in zip(runs[n][load],
                                                                                           runs[base][load])]))
                                   for load, (_, _, key) in loads.items()} for n in counts[1:]}
    for name, ratio in ratios.items():
        print(f"workers {name.replace('_over_', ' / ')}: batch 1 x 16 clients {ratio['batch1_16_clients']:.2f}x req/s, "
              f"batch 64 x 4 clients {ratio['batch64_4_clients']:.2f}x img/s (median of {ROUNDS} rounds; goal on "
              f"this 2-core machine >= 1.3x req/s at batch 1)", flush=True)
    shares = {n: float(np.median([r["client_share_of_cpus"] for r in runs[n]["batch1_16_clients"]])) for n in counts}
    print("the clients took, at batch 1 x 16: " + ", ".join(
        f"{100 * share:.0f}% of the {CPUS} CPUs with {n} worker{'s' if n > 1 else ''}" for n, share in shares.items()),
        flush=True)
    return {"cpus": CPUS, "runs": {str(n): v for n, v in runs.items()}, "ratios": ratios,
            "client_share_of_cpus_batch1": {str(n): v for n, v in shares.items()}}


PROTOCOLS = ("grpc", "http", "http-json")


def alternating_latency(addresses: dict[str, str], count: int, out_queue) -> None:
    """One client process sending batch-1 requests with tritonclient, one protocol after the
    other in turn, so all three see the same machine noise."""
    calls = {protocol: tritonclient_call(protocol, addresses[protocol], 1) for protocol in PROTOCOLS}
    latencies: dict[str, list[float]] = {protocol: [] for protocol in calls}
    for i in range(count + 50):
        for protocol, once in calls.items():
            start = time.perf_counter()
            once()
            if i >= 50:  # the first 50 warm the connections up
                latencies[protocol].append(time.perf_counter() - start)
    out_queue.put(latencies)


def encoded_bodies(batch: int) -> dict[str, tuple[bytes, dict]]:
    """The same request as JSON (as tritonclient.http and curl users send it) and with
    binary tensors, encoded once: the client's own encoding is not measured."""
    x = np.random.default_rng(batch).standard_normal((batch, *INPUT_SHAPE), dtype=np.float32)
    as_json = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                      "data": x.ravel().tolist()}],
                          "outputs": [{"name": "logits", "parameters": {"binary_data": False}}]}).encode()
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return {"json": (as_json, {"Content-Type": "application/json"}),
            "binary": (header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))})}


def pre_encoded_client(address: str, batch: int, kind: str, count: int, seconds: float, go, out_queue) -> None:
    """One lean client (http.client, one kept-alive connection) posting one pre-encoded body
    `count` times or for `seconds`; puts its latencies."""
    import http.client

    body, headers = encoded_bodies(batch)[kind]
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    path = f"/v2/models/{MODEL}/infer"
    for _ in range(20):  # warm-up, outside the measurement
        connection.request("POST", path, body, headers)
        connection.getresponse().read()
    go.wait(60)
    latencies, end = [], time.monotonic() + seconds
    while len(latencies) < count and time.monotonic() < end:
        start = time.perf_counter()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    connection.close()
    out_queue.put(latencies)


def server_cpu_per_request(server, batch: int, kind: str, seconds: float, count: int = 2000) -> dict:
    """Server CPU ms per request (from /proc, the server's every thread) and the client's p50,
    for one pre-encoded body sent back to back by one client process."""
    ctx = mp.get_context("spawn")
    go, out_queue = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=pre_encoded_client, args=(server.http_address(), batch, kind, count, seconds, go,
                                                        out_queue))
    proc.start()
    time.sleep(1.0)  # its warm-up
    cpu = cpu_seconds(server.pid)
    go.set()
    latencies = out_queue.get(timeout=seconds + 120)
    cpu = cpu_seconds(server.pid) - cpu
    proc.join(30)
    return {"requests": len(latencies), "server_cpu_ms_per_request": 1000 * cpu / len(latencies),
            "p50_ms": percentile_ms(latencies, 50)}


def json_against_binary(server, seconds: float) -> dict:
    """The server's cost of JSON tensors against binary ones, bodies encoded beforehand."""
    figures = {f"{kind}_batch{batch}": server_cpu_per_request(server, batch, kind, seconds)
               for batch in (1, 64) for kind in ("binary", "json")}
    for batch in (1, 64):
        b, j = figures[f"binary_batch{batch}"], figures[f"json_batch{batch}"]
        print(f"pre-encoded bodies, batch {batch}: server CPU per request JSON {j['server_cpu_ms_per_request']:.2f} ms, "
              f"binary {b['server_cpu_ms_per_request']:.2f} ms; p50 JSON {j['p50_ms']:.3f} ms, binary "
              f"{b['p50_ms']:.3f} ms ({j['p50_ms'] / b['p50_ms']:.2f}x)", flush=True)
    figures["targets"] = {
        "json_batch64_server_cpu_ms": figures["json_batch64"]["server_cpu_ms_per_request"],
        "json_batch64_cpu_target_met": figures["json_batch64"]["server_cpu_ms_per_request"] <= 8.0,
        "json_over_binary_p50_batch1": figures["json_batch1"]["p50_ms"] / figures["binary_batch1"]["p50_ms"],
    }
    figures["targets"]["json_p50_target_met"] = figures["targets"]["json_over_binary_p50_batch1"] <= 1.5
    print(f"targets: JSON batch 64 server CPU {figures['targets']['json_batch64_server_cpu_ms']:.2f} ms per request "
          f"(<= 8); JSON / binary batch-1 p50 {figures['targets']['json_over_binary_p50_batch1']:.2f} (<= 1.5)",
          flush=True)
    return figures


def http_against_grpc(server, seconds: float) -> dict:
    """HTTP (tritonclient.http, binary and JSON) against gRPC on the same server: batch-1 p50
    alternately, and batch-64 images/s with 4 clients in alternating rounds."""
    addresses = {"grpc": server.address, "http": server.http_address(), "http-json": server.http_address()}
    latencies = in_client_process(alternating_latency, addresses, SEQUENTIAL_REQUESTS)
    p50 = {protocol: percentile_ms(v, 50) for protocol, v in latencies.items()}
    p99 = {protocol: percentile_ms(v, 99) for protocol, v in latencies.items()}
    print("batch 1, sequential, tritonclient alternating: p50 " + ", ".join(
        f"{protocol} {p50[protocol]:.3f} ms (p99 {p99[protocol]:.3f})" for protocol in PROTOCOLS), flush=True)
    rounds: dict[str, list[float]] = {protocol: [] for protocol in PROTOCOLS}
    for i in range(ROUNDS):
        order = PROTOCOLS if i % 2 == 0 else PROTOCOLS[::-1]
        for protocol in order:
            rounds[protocol].append(run_clients(addresses[protocol], 4, 64, seconds, protocol=protocol)["images_per_s"])
    print("batch 64, 4 clients, img/s per round: " + "; ".join(
        f"{protocol} " + ", ".join(f"{x:,.0f}" for x in rounds[protocol]) for protocol in PROTOCOLS), flush=True)
    share = {protocol: float(np.median([h / g for h, g in zip(rounds[protocol], rounds["grpc"])]))
             for protocol in ("http", "http-json")}
    ratios = {"p50_http_binary_over_grpc": p50["http"] / p50["grpc"],
              "p50_http_json_over_grpc": p50["http-json"] / p50["grpc"],
              "batch64_http_binary_share_of_grpc": share["http"],
              "batch64_http_json_share_of_grpc": share["http-json"]}
    ratios["p50_target_met"] = ratios["p50_http_binary_over_grpc"] <= 1.5
    ratios["batch64_target_met"] = ratios["batch64_http_binary_share_of_grpc"] >= 0.7
    print(f"targets: HTTP binary p50 / gRPC p50 = {ratios['p50_http_binary_over_grpc']:.2f} (<= 1.5; JSON "
          f"{ratios['p50_http_json_over_grpc']:.2f}); batch 64 HTTP binary = "
          f"{100 * share['http']:.0f}% of gRPC img/s (>= 70%; JSON {100 * share['http-json']:.0f}%)", flush=True)
    return {"p50_ms": p50, "p99_ms": p99, "batch64_4clients_images_per_s_rounds": rounds, "targets": ratios}


def main() -> int:
    global MODEL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="models directory; the model is exported there if missing (default: a temp dir)")
    parser.add_argument("--model", default=MODEL, help=f"served model name (default: {MODEL})")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput run (default: 3)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="execution provider, in process and in the servers (default: cpu)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    parser.add_argument("--only", choices=("http", "json", "latency"),
                        help="run only this part: http = HTTP against gRPC on one server, json = JSON against "
                             "binary tensors with pre-encoded bodies, latency = batch-1 p50 and server CPU per "
                             "request against the echo server and in-process onnxruntime (default: everything)")
    parser.add_argument("--workers", type=lambda text: [int(n) for n in text.split(",")],
                        help="compare these worker counts instead (e.g. 1,2): batch 1 x 16 clients and batch 64 x 4 "
                             "clients on each, the ratio to the first (default: the single-process bench)")
    parser.add_argument("--server-args", nargs=argparse.REMAINDER, default=[],
                        help="extra python -m serve flags, last on the line (default: none)")
    args = parser.parse_args()
    MODEL = os.environ["ZOO_BENCH_MODEL"] = args.model  # inherited by the spawned clients
    models = models_dir_with((MODEL,), args.models)
    figures: dict = {"model": MODEL, "device": args.device, "seconds_per_run": args.seconds}
    if args.workers:
        figures["workers"] = workers_comparison(models, args.workers, args.seconds,
                                                ["--device", args.device, *args.server_args])
        report(figures, args.json)
        return 0
    if args.only in ("http", "json"):
        server = start_server(models, "--device", args.device, "--http-port", "0", *args.server_args)
        try:
            figures["json_against_binary"] = json_against_binary(server, args.seconds)
            if args.only == "http":
                figures["http_against_grpc"] = http_against_grpc(server, args.seconds)
        finally:
            server.stop()
        report(figures, args.json)
        return 0

    sess = in_process_session(models, args.device)
    figures["in_process"] = limit = in_process(sess, args.seconds)
    print(f"in-process onnxruntime: p50 {limit['p50_ms_batch1']:.3f} ms at batch 1 "
          f"({limit['p50_ms_batch1_paced']:.3f} ms after 0.5 ms idle); "
          f"{limit['images_per_s_batch1']:,.0f} img/s at batch 1, {limit['images_per_s_batch64']:,.0f} at batch 64",
          flush=True)

    ctx = mp.get_context("spawn")
    port_queue, stop_event = ctx.Queue(), ctx.Event()
    echo = ctx.Process(target=echo_server, args=(port_queue, stop_event))
    echo.start()
    echo_address = f"127.0.0.1:{port_queue.get(timeout=60)}"
    server_args = ["--device", args.device, *args.server_args]
    server = start_server(models, *server_args, "--http-port", "0")
    unbatched = None if args.only == "latency" else start_server(models, *server_args, "--max-batch", "0")
    try:
        paired = run_paired(echo_address, server.address, SEQUENTIAL_REQUESTS, {"echo": echo.pid, "server": server.pid})
        stop_event.set()
        echo.join(30)
        floor, seq = paired["echo"], paired["server"]
        figures["echo"], figures["sequential_batch1"] = floor, seq
        cpu_ratio = seq["cpu_ms_per_request"] / floor["cpu_ms_per_request"]
        print(f"batch 1, sequential, one lean client alternating: grpcio echo (transport floor) p50 "
              f"{floor['p50_ms']:.3f} ms, p99 {floor['p99_ms']:.3f} ms; our server p50 {seq['p50_ms']:.3f} ms, "
              f"p99 {seq['p99_ms']:.3f} ms", flush=True)
        print(f"server CPU per batch-1 request, same requests: echo {floor['cpu_ms_per_request']:.3f} ms, ours "
              f"{seq['cpu_ms_per_request']:.3f} ms: {cpu_ratio:.2f}x the echo server's (goal <= 1.5)", flush=True)
        if args.only == "latency":
            latency_ratio = seq["p50_ms"] / (floor["p50_ms"] + limit["p50_ms_batch1"])
            figures["targets"] = {"p50_over_floor_plus_inference": latency_ratio, "p50_target_met": latency_ratio <= 1.3,
                                  "cpu_over_echo": cpu_ratio, "cpu_target_met": cpu_ratio <= 1.5}
            print(f"targets: p50 / (echo + in-process) = {latency_ratio:.2f} (<= 1.3); server CPU / echo's = "
                  f"{cpu_ratio:.2f} (<= 1.5)")
            report(figures, args.json)
            return 0
        seq_triton = run_clients(server.address, 1, 1, args.seconds, SEQUENTIAL_REQUESTS)
        figures["sequential_batch1_tritonclient"] = seq_triton
        print(f"our server, sequential batch 1, tritonclient: p50 {seq_triton['p50_ms']:.3f} ms, "
              f"p99 {seq_triton['p99_ms']:.3f} ms", flush=True)
        figures["throughput"] = []
        print(f"{'batch':>6}{'clients':>8}{'req/s':>10}{'img/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'server CPU ms/req':>19}{'client CPU ms/req':>19}")
        for batch in (1, 64):
            for clients in (1, 4, 16):
                row = run_clients(server.address, clients, batch, args.seconds, server_pid=server.pid)
                figures["throughput"].append(row)
                print(f"{batch:>6}{clients:>8}{row['requests_per_s']:>10,.0f}{row['images_per_s']:>11,.0f}"
                      f"{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['server_cpu_ms_per_request']:>19.3f}"
                      f"{row['client_cpu_ms_per_request']:>19.3f}", flush=True)
        figures["json_against_binary"] = json_against_binary(server, args.seconds)
        figures["http_against_grpc"] = http_against_grpc(server, args.seconds)
        # Batch 64, 4 clients, against in-process onnxruntime measured just before and after.
        shares, bounds = [], []
        for _ in range(ROUNDS):
            before = in_process_images_per_s(sess, 64, args.seconds / 2)
            row = run_clients(server.address, 4, 64, args.seconds)
            after = in_process_images_per_s(sess, 64, args.seconds / 2)
            in_process_rate = (before + after) / 2
            shares.append(row["images_per_s"] / in_process_rate)
            if args.device == "cpu":
                # The share a server costing nothing but onnxruntime's own CPU could reach here,
                # with the clients' CPU taken from the same cores: inference / (inference + clients).
                inference_ms = 1000 * os.cpu_count() * 64 / in_process_rate
                bounds.append(inference_ms / (inference_ms + row["client_cpu_ms_per_request"]))
        # Batching on against off in back-to-back pairs, the order swapped every round, so
        # that each pair sees the same machine; the gain is the median of the pairs' ratios.
        on_runs, off_runs = [], []
        for i in range(BATCHING_ROUNDS):
            pair = [(off_runs, unbatched), (on_runs, server)]
            for runs, target in pair if i % 2 == 0 else pair[::-1]:
                runs.append(run_clients(target.address, 16, 1, args.seconds, server_pid=target.pid))
    finally:
        server.stop()
        if unbatched is not None:
            unbatched.stop()
    figures["batch64_4clients_share_rounds"] = shares
    figures["batch64_4clients_share_bound_rounds"] = bounds
    figures["batching_rounds"] = {"on": on_runs, "off": off_runs}
    latency_ratio = seq["p50_ms"] / (floor["p50_ms"] + limit["p50_ms_batch1"])
    paced_ratio = seq["p50_ms"] / (floor["p50_ms"] + limit["p50_ms_batch1_paced"])
    throughput_share = float(np.median(shares))
    batching_gain = float(np.median([on["requests_per_s"] / off["requests_per_s"]
                                     for on, off in zip(on_runs, off_runs)]))
    cpu_on, cpu_off = (float(np.median([r["server_cpu_ms_per_request"] for r in runs])) for runs in (on_runs, off_runs))
    figures["targets"] = {
        "p50_over_floor_plus_paced_inference": paced_ratio,
        "batching_server_cpu_ms_per_request": {"on": cpu_on, "off": cpu_off},
        "p50_over_floor_plus_inference": latency_ratio, "p50_target_met": latency_ratio <= 1.3,
        "cpu_over_echo": cpu_ratio, "cpu_target_met": cpu_ratio <= 1.5,
        "batch64_4clients_share_of_in_process": throughput_share, "throughput_target_met": throughput_share >= 0.5,
        "batching_gain_batch1_16_clients": batching_gain, "batching_target_met": batching_gain > 1.0,
    }
    print("batch 64, 4 clients, share of in-process onnxruntime measured around it, per round: "
          + ", ".join(f"{100 * x:.0f}%" for x in shares)
          + ("; the most a server costing only inference could reach beside these clients: "
             + ", ".join(f"{100 * x:.0f}%" for x in bounds) if bounds else ""))
    print("batch 1, 16 clients, alternating rounds: batching off "
          + ", ".join(f"{r['requests_per_s']:,.0f}" for r in off_runs) + " req/s; on "
          + ", ".join(f"{r['requests_per_s']:,.0f}" for r in on_runs) + f" req/s (median ratio {batching_gain:.2f}x); "
          + f"server CPU per request {cpu_off:.3f} ms off, {cpu_on:.3f} ms on ({cpu_off / cpu_on:.2f}x less work)")
    print(f"context: p50 / (echo + in-process after 0.5 ms idle) = {paced_ratio:.2f}")
    print(f"targets: p50 / (echo + in-process) = {latency_ratio:.2f} (<= 1.3); server CPU / echo's = {cpu_ratio:.2f} "
          f"(<= 1.5); batch 64 x 4 clients = "
          f"{100 * throughput_share:.0f}% of in-process (>= 50%); batching gain {batching_gain:.2f}x (> 1)")
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
