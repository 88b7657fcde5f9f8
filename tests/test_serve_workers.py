"""`--workers N`: worker processes that are one server to the outside (issue 22), against
real processes, real ports and real clients: connections spread by the kernel, one
readiness, one metrics endpoint, a worker killed under load replaced, SIGTERM draining
every worker and leaving no process behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.server_process import descendants, start_server
from serve.config import ConfigError, GrpcConfig, HttpConfig, ModelsConfig, ServeConfig
from serve.gen import grpc_service_pb2 as kpb
from serve.gen import predictor_pb2 as pb
from serve.gen import predictor_pb2_grpc
from serve.supervisor import State, fleet_ready, worker_config
from tests.serving import TIMEOUT, wait_until_admitted

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
CLIENTS = 8
# Channels of one process with the same arguments share one connection (grpc's global
# subchannel pool); a client each in its own process would have its own. So each of ours does.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def batch1_request() -> bytes:
    request = kpb.ModelInferRequest(model_name="lenet5-mnist")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(np.zeros((1, 1, 28, 28), np.float32).tobytes())
    return request.SerializeToString()


def metrics_port(server) -> int:
    return int(re.search(r"metrics on :(\d+)/metrics", server.output).group(1))


def _metrics(port: int):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT) as page:
        return [s for family in text_string_to_metric_families(page.read().decode()) for s in family.samples]


def scrape(port: int) -> dict[str, float]:
    """Every sample of the server's /metrics, summed over labels: name -> value."""
    totals: dict[str, float] = {}
    for sample in _metrics(port):
        totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def samples(server, name: str) -> list[tuple[dict, float]]:
    return [(s.labels, s.value) for s in _metrics(metrics_port(server)) if s.name == name]


def http_ready(address: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/health/ready", timeout=TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def worker_pids(server) -> list[int]:
    """The server's worker processes (multiprocessing's resource tracker is not one)."""
    return [pid for pid in descendants(server.pid) if "spawn_main" in _cmdline(pid)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def established_by_pid(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections on local `port` each process holds (its socket
    inodes, matched with /proc/net/tcp and tcp6)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            if local_port == port and state == "01":  # ESTABLISHED, the server's end
                inodes[inode] = 0
    counts = {}
    for pid in pids:
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            count += target.startswith("socket:[") and target[8:-1] in inodes
        counts[pid] = count
    return counts


def loads_grpc(pid: int) -> bool:
    return "cygrpc" in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture
def two_workers(models_dir):
    server = start_server(models_dir, "--workers", "2", "--http-port", "0", "--metrics-port", "0", "--grace", "20")
    try:
        yield server
    finally:
        server.stop(timeout=60)


def test_two_workers_are_one_server(two_workers):
    """16 channels spread over both workers by the kernel; one readiness; one metrics
    endpoint summing both; every line says who wrote it; the supervisor loads no gRPC."""
    server = two_workers
    workers = worker_pids(server)
    assert len(workers) == 2, server.output
    assert not loads_grpc(server.pid) and all(loads_grpc(pid) for pid in workers)
    assert http_ready(server.http_address()) == 200
    port = int(server.address.rsplit(":", 1)[1])

    payload = batch1_request()
    channels = [grpc.insecure_channel(server.address, options=OWN_CONNECTION) for _ in range(16)]
    try:
        for channel in channels:  # each channel is one connection, placed by the kernel
            for _ in range(5):
                response = kpb.ModelInferResponse.FromString(channel.unary_unary(MODEL_INFER)(payload, timeout=TIMEOUT))
                assert response.outputs[0].shape == [1, 10]
        per_worker = established_by_pid(workers, port)
    finally:
        for channel in channels:
            channel.close()
    print(f"connections per worker: {per_worker}")
    assert sum(per_worker.values()) == 16 and all(per_worker.values()), per_worker

    infers = sum(value for labels, value in samples(server, "zoo_requests_total") if labels["method"] == "ModelInfer")
    assert infers == 80  # both workers' counters, summed
    totals = scrape(metrics_port(server))
    assert totals["zoo_workers"] == 2 and totals["zoo_worker_restarts_total"] == 0
    for who in ("supervisor: serving 2 models", "worker 1 (pid"):
        assert who in server.output


def test_a_worker_killed_under_load_is_replaced(two_workers):
    """8 clients, each its own channel, sending batch-1 ModelInfer; one worker is killed
    (kill -9). Every failure is UNAVAILABLE (no INTERNAL, no hang); a client that waits for
    a connection (wait_for_ready) loses only the request it had in flight on that worker;
    all go on to the other worker; a replacement takes its place, counted in the metrics;
    the server stays ready all the while.

    Half the clients fail fast, as gRPC's default: one whose new connection lands on the
    dying worker before the kernel has closed its socket has it reset, and then fails its
    calls at once for gRPC's reconnect backoff (about a second), each UNAVAILABLE; with
    net.ipv4.tcp_migrate_req=1 the kernel hands such connections to the other worker."""
    server = two_workers
    before = set(worker_pids(server))
    payload = batch1_request()
    outcomes: list[list[str]] = [[] for _ in range(CLIENTS)]
    waits = [i % 2 == 0 for i in range(CLIENTS)]
    stop = threading.Event()

    def client(out: list[str], wait_for_ready: bool) -> None:
        with grpc.insecure_channel(server.address, options=OWN_CONNECTION) as channel:
            call = channel.unary_unary(MODEL_INFER)
            while not stop.is_set() and len(out) < 50_000:
                try:
                    call(payload, timeout=TIMEOUT, wait_for_ready=wait_for_ready)
                    out.append("OK")
                except grpc.RpcError as e:
                    out.append(e.code().name)

    readiness: list[int] = []

    def probe() -> None:  # as kubelet's readinessProbe, with a fresh connection each time
        while not stop.is_set() and len(readiness) < 2_000:
            try:
                readiness.append(http_ready(server.http_address()))
            except OSError:  # a probe in flight on the worker killed: reset, as any request there
                readiness.append(0)
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(out, wait)) for out, wait in zip(outcomes, waits)]
    threads.append(threading.Thread(target=probe))
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while min(len(out) for out in outcomes) < 20:  # every client under way
            assert time.monotonic() < deadline, "the clients did not get going"
            time.sleep(0.05)
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = [len(out) for out in outcomes]
        while True:  # until the replacement serves and every client has gone on
            replacements = set(worker_pids(server)) - before
            if replacements and "is serving" in server.output:
                break
            assert time.monotonic() < deadline, f"no replacement within 60 s:\n{server.output}"
            time.sleep(0.1)
        done = [len(out) for out in outcomes]
        while any(len(out) < n + 20 for out, n in zip(outcomes, done)):
            assert time.monotonic() < deadline, "the clients stopped getting answers"
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    after = [out[n:] for out, n in zip(outcomes, killed_at)]
    failed = [[code for code in out if code != "OK"] for out in after]
    print(f"requests: {sum(map(len, outcomes))}; after the kill: {sum(map(len, after))}; failed per client "
          f"(waiting for ready / failing fast): {[len(f) for f, w in zip(failed, waits) if w]} / "
          f"{[len(f) for f, w in zip(failed, waits) if not w]}; readiness probes {len(readiness)}, not 200: "
          f"{[r for r in readiness if r != 200]}")
    assert {code for f in failed for code in f} <= {"UNAVAILABLE"}, failed
    # Only what it had sent to the dying worker: the request in flight, and at most one sent
    # on a reconnection the kernel gave the dying worker's socket in the moment before it
    # closed (reset then, as the README says; net.ipv4.tcp_migrate_req=1 would hand it on).
    assert all(len(f) <= 2 for f, wait in zip(failed, waits) if wait)
    assert all(out[-1] == "OK" for out in outcomes)
    assert len(worker_pids(server)) == 2 and victim not in worker_pids(server)
    assert scrape(metrics_port(server))["zoo_worker_restarts_total"] == 1
    assert set(readiness) <= {200, 0} and readiness.count(0) <= 1  # never 503: the server stayed ready
    assert re.search(rf"worker \d \(pid {victim}\) was killed by SIGKILL after [\d.]+ s; replacing it", server.output)


def test_sigterm_drains_every_worker_and_leaves_no_process(models_dir, mnist_batch):
    """8 long requests over the workers; SIGTERM to the supervisor: all 8 answered, a
    request sent after the signal refused (UNAVAILABLE), exit 0, and none of its processes
    (workers, multiprocessing's helper) left."""
    _, x, _ = mnist_batch
    x = np.tile(x, (64, 1, 1, 1))  # 4,096 images a request: long enough to be in flight
    server = start_server(models_dir, "--workers", "2", "--max-request-images", "4096", "--grace", "60",
                          "--metrics-port", "0")
    tree = descendants(server.pid)
    request = pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(shape=list(x.shape), dtype=pb.DTYPE_FLOAT32,
                                                                        data=x.tobytes()))
    outcomes = []

    def client():
        with grpc.insecure_channel(server.address, options=[*OWN_CONNECTION,
                                                            ("grpc.max_send_message_length", 64 << 20)]) as channel:
            try:
                response = predictor_pb2_grpc.PredictorStub(channel).Predict(request, timeout=120)
                outcomes.append("OK" if len(response.predictions) == len(x) else "SHORT")
            except grpc.RpcError as e:
                outcomes.append(f"{e.code().name}: {e.details()}")

    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for c in clients:
        c.start()
    wait_until_admitted(server, CLIENTS, within=60)
    deadline = time.monotonic() + 60
    server.proc.send_signal(signal.SIGTERM)
    while server.output.count("SIGTERM: draining") < 3:  # the supervisor and both workers
        assert time.monotonic() < deadline + 30, server.output
        time.sleep(0.02)
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as late:
            predictor_pb2_grpc.PredictorStub(channel).Predict(request, timeout=TIMEOUT)
    for c in clients:
        c.join(150)
    code = server.stop(timeout=150)
    time.sleep(0.5)  # the resource tracker leaves once every pipe to it has closed
    left = [pid for pid in tree if Path(f"/proc/{pid}").exists() and _cmdline(pid)]
    assert outcomes == ["OK"] * CLIENTS, server.output
    assert late.value.code() == grpc.StatusCode.UNAVAILABLE
    assert code == 0 and "Traceback" not in server.output
    assert len(tree) >= 2 and left == [], f"left behind: {[_cmdline(p) for p in left]}"
    assert server.output.count(": stopped") == 3


def test_a_replacement_that_cannot_load_its_models_makes_the_server_unready(models_dir, tmp_path):
    """The model file breaks while the server runs; a worker killed then comes back with a
    model that does not load: not ready (strict readiness) while the other still serves."""
    shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path)
    server = start_server(tmp_path, "--workers", "2", "--http-port", "0")
    try:
        assert http_ready(server.http_address()) == 200
        (tmp_path / "lenet5-mnist.onnx").write_bytes(b"no longer a model")
        os.kill(worker_pids(server)[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while "not ready: worker" not in server.output:
            assert time.monotonic() < deadline, server.output
            time.sleep(0.1)
        assert {http_ready(server.http_address()) for _ in range(8)} == {503}
        with grpc.insecure_channel(server.address) as channel:
            ready = kpb.ServerReadyResponse.FromString(channel.unary_unary(
                "/inference.GRPCInferenceService/ServerReady")(kpb.ServerReadyRequest().SerializeToString(),
                                                              timeout=TIMEOUT))
        assert not ready.ready
    finally:
        assert server.stop(timeout=60) == 0


@pytest.mark.parametrize("fault", ["no models", "port in use", "a broken model with --strict"])
def test_a_start_up_fault_is_one_line_with_two_workers(tmp_path, models_dir, fault):
    """As the single process: one line, its exit code, no traceback. Found by the command
    line (no models), the supervisor (the port) or the workers (loading the models: the
    first to fail says it, once)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if fault == "no models":
            missing = tmp_path / "missing"
            args, expected, code = ["--models", str(missing)], f"error: models directory {missing} does not exist", 2
        elif fault == "a broken model with --strict":
            shutil.copy(models_dir / "lenet5-mnist.onnx", tmp_path)
            (tmp_path / "broken.onnx").write_bytes(b"not a model")
            args, expected, code = ["--models", str(tmp_path), "--strict"], f"error: {tmp_path / 'broken.onnx'}: ", 1
        else:
            args, expected, code = (["--models", str(models_dir), "--port", str(busy.getsockname()[1])],
                                    f"error: cannot bind 127.0.0.1:{busy.getsockname()[1]}: Address already in use", 1)
        result = subprocess.run([sys.executable, "-m", "serve", "--workers", "2", "--port", "0", *args],
                                capture_output=True, text=True, timeout=90)
    assert result.returncode == code
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(expected), result.stderr


def test_the_rule_over_the_workers():
    """Ready once every worker has loaded (and is ready by the rule); a worker being
    replaced does not count against it while another serves; one that loaded unready does."""
    R, S, U, X = State.READY, State.STARTING, State.UNREADY, State.REPLACING
    assert fleet_ready([R, R])
    assert not fleet_ready([R, S])  # one still loading
    assert fleet_ready([R, X])  # one being replaced, the other serves
    assert not fleet_ready([X, X])  # nobody serves
    assert not fleet_ready([R, U])  # a worker whose models did not load


def test_onnxruntime_threads_are_shared_out():
    base = ServeConfig(ModelsConfig(Path("models")), grpc=GrpcConfig(port=0), http=HttpConfig(port=0), workers=4)
    config = worker_config(base, 2, {"grpc": 5001, "http": 5002}, cpus=16)
    assert config.models.ort_threads == 4 and config.worker.number == 2 and config.metrics_port is None
    assert (config.grpc.port, config.grpc.reuse_port, config.http.port, config.http.reuse_port) == (5001, True,
                                                                                                    5002, True)
    assert worker_config(base, 1, {"grpc": 1, "http": 2}, cpus=2).models.ort_threads == 1  # never 0: at least one
    explicit = ServeConfig(ModelsConfig(Path("models"), ort_threads=3), workers=2)
    assert worker_config(explicit, 1, {"grpc": 1}, cpus=16).models.ort_threads == 3
    too_many = ServeConfig(ModelsConfig(Path("models"), ort_threads=64), workers=2)
    with pytest.raises(ConfigError, match="--workers 2 x --ort-threads 64"):
        too_many.check()


def test_metrics_survive_a_workers_empty_file(tmp_path):
    """A worker killed between creating its metrics file and sizing it leaves it empty for
    good; the sum over the others is still served (prometheus_client alone would fail every
    scrape from then on)."""
    from prometheus_client import generate_latest

    from serve.supervisor import SupervisorMetrics

    count = ("from prometheus_client import CollectorRegistry, Counter; "
             "Counter('zoo_requests', 'h', ['code'], registry=CollectorRegistry()).labels('OK').inc(3)")
    for _ in range(2):  # two workers, each its own file
        subprocess.run([sys.executable, "-c", count], check=True, timeout=60,
                       env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    (tmp_path / "counter_4194301.db").touch()
    page = generate_latest(SupervisorMetrics(str(tmp_path)).registry).decode()
    assert 'zoo_requests_total{code="OK"} 6.0' in page


def test_auto_is_one_process_in_explicit_model_control_and_a_count_is_refused():
    """Triton's `--model-control-mode explicit` works as typed: `auto` means one process
    there (a load request would reach one worker of several); asking for more says why."""
    from serve.__main__ import build_parser, config_from_args
    from serve.cpus import available_cpus

    def config(*argv: str) -> ServeConfig:
        return config_from_args(build_parser().parse_args(list(argv)))

    explicit = config("--model-control-mode", "explicit", "--load-model", "lenet5-mnist")
    assert explicit.workers == 1
    explicit.check()
    assert config("--model-control-mode", "poll").workers == available_cpus()
    assert config("--workers", "AUTO").workers == available_cpus()
    with pytest.raises(ConfigError, match="explicit with --workers 2: a load or unload request would reach one"):
        config("--model-control-mode", "explicit", "--workers", "2").check()


@pytest.mark.parametrize("fleet_ready", [False, True])
def test_a_replacement_joins_a_ready_server_ready(models_dir, fleet_ready):
    """The kernel sends a worker new connections as soon as it listens: a replacement for a
    worker of a ready server answers ready from then on (its own models loaded), where a
    first start waits for the supervisor's word that every worker has loaded."""
    from dataclasses import replace

    from serve.server import create_server
    from tests.serving import serve_config

    config = worker_config(replace(serve_config(models_dir), workers=2), 2, {"grpc": 0}, cpus=2,
                           fleet_ready=fleet_ready)
    assert config.worker.fleet_ready is fleet_ready
    server = create_server(config)
    try:
        assert server.plane.readiness.own_ready()
        assert server.plane.readiness.server_ready() is fleet_ready
        server.set_fleet_ready(not fleet_ready)  # the supervisor's word still decides after
        assert server.plane.readiness.server_ready() is not fleet_ready
    finally:
        server.stop(grace=0)
