"""`--workers N` (N > 1): N server processes that are one server to the outside.

The supervisor loads no model and creates no gRPC object; it reserves the ports, spawns
the workers (multiprocessing's spawn: a fresh interpreter each, since grpcio hangs in a
child forked after it started), and watches them:

- every worker binds the gRPC and HTTP ports with SO_REUSEPORT, so the kernel spreads
  connections over them; the supervisor holds each port bound (never listening) from
  before the first worker until the last has gone, so port 0 means one port for all and
  nobody else takes it while a worker is being replaced;
- ready by the one rule: once every worker has loaded its models and is ready by the rule
  on them; a worker being replaced does not make the server unready while another serves,
  a worker whose models do not load does. The supervisor tells each worker (FleetReady),
  and every worker's health and readiness answers say it;
- one metrics endpoint on --metrics-port, served here: the workers' counters and
  histograms summed (prometheus_client's multiprocess mode, one folder of files the
  workers write), plus zoo_worker_restarts_total and zoo_workers;
- a worker that dies (crash, OOM kill, kill -9) is replaced, at once the first time and
  with a doubling delay (up to MAX_BACKOFF_S) while it keeps dying within STABLE_S;
- a start-up fault in the first start (no models, a bad --device, a port in use) stops
  everything with the one line and exit code the single process gives;
- SIGTERM or SIGINT: every worker drains as one server does (health NOT_SERVING, new
  requests refused, those received answered within --grace); the supervisor exits 0 once
  all have, and kills any still running --grace + SHUTDOWN_MARGIN_S after the signal.

Each process's log lines say which wrote them ('worker 2 (pid 1234)', 'supervisor').
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from enum import Enum
from multiprocessing.connection import Connection, wait
from pathlib import Path

from . import process
from .config import ServeConfig, WorkerSlot
from .core.metrics import MetricsEndpoint
from .cpus import available_cpus, default_ort_threads
from .worker import FleetReady, Loaded, StartFailed, log_format, run_worker

log = logging.getLogger("serve")

STABLE_S = 10.0  # a worker that lived this long before dying is replaced at once
FIRST_BACKOFF_S = 0.5  # then 1, 2, 4 ... while it keeps dying sooner
MAX_BACKOFF_S = 30.0
SHUTDOWN_MARGIN_S = 10.0  # past --grace: a worker still running then is killed
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode reads it at import


class State(Enum):
    STARTING = "starting"  # never loaded yet: the server is not ready until it has
    READY = "ready"  # loaded, and ready by the rule on its models
    UNREADY = "unready"  # loaded, but its models are not ready (or it failed to start again)
    REPLACING = "replacing"  # it had been ready, died, and a replacement is on its way


@dataclass
class Worker:
    number: int
    state: State = State.STARTING
    process: multiprocessing.Process | None = None
    conn: Connection | None = None
    started_at: float = 0.0
    quick_deaths: int = 0  # deaths in a row, each within STABLE_S of its start
    restart_at: float | None = None  # when to start its replacement


def fleet_ready(states: list[State]) -> bool:
    """The one readiness rule over the workers: every one has loaded and is ready, or is
    being replaced after it was, and at least one serves."""
    return all(s in (State.READY, State.REPLACING) for s in states) and State.READY in states


def worker_config(config: ServeConfig, number: int, ports: dict[str, int], cpus: int,
                  fleet_ready: bool = False) -> ServeConfig:
    """Worker `number`'s config: the reserved ports shared with SO_REUSEPORT, its share of
    onnxruntime threads, no metrics port of its own (the supervisor serves the sum), and
    whether the server is ready as it starts (a replacement's)."""
    models = config.models
    if models.ort_threads == 0:
        models = replace(models, ort_threads=default_ort_threads(config.workers, cpus))
    grpc = config.grpc and replace(config.grpc, port=ports["grpc"], reuse_port=True)
    http = config.http and replace(config.http, port=ports["http"], reuse_port=True)
    return replace(config, models=models, grpc=grpc, http=http, metrics_port=None,
                   worker=WorkerSlot(number, fleet_ready))


# How each front end says its port cannot be bound (the single process's words).
BIND_ERRORS = {"grpc": "cannot bind {address}: {reason}", "http": "cannot bind HTTP {address} ({reason})"}


def reserve_port(host: str, port: int, front_end: str) -> socket.socket:
    """A socket bound (not listening) to host:port with SO_REUSEPORT, the port a free one
    for port 0. It must be free first: bound by a socket without SO_REUSEPORT, so another
    server (another supervisor of the same user included) is never joined by mistake."""
    def refused(error: OSError, port: int) -> OSError:
        return OSError(BIND_ERRORS[front_end].format(address=f"{host}:{port}", reason=error.strerror or error))

    family, kind, proto, _, sockaddr = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as e:
            raise refused(e, port) from None
        sockaddr = (sockaddr[0], probe.getsockname()[1], *sockaddr[2:])
    reservation = socket.socket(family, kind, proto)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reservation.bind(sockaddr)
    except OSError as e:
        reservation.close()
        raise refused(e, sockaddr[1]) from None
    return reservation


class WorkersCollector:
    """The workers' metrics files summed, as prometheus_client's MultiProcessCollector sums
    them, but passing over a file that is still empty: a worker creates its file before it
    sizes it, and one scrape in that moment (or for ever, if the worker was killed in it)
    would fail whole (prometheus/client_python#1199)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def collect(self):
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for path in self.folder.glob("*.db"):
            try:
                if path.stat().st_size > 0:
                    files.append(str(path))
            except OSError:
                pass
        return MultiProcessCollector.merge(files, accumulate=True)


class SupervisorMetrics(MetricsEndpoint):
    """/metrics for the whole server: the workers' files summed, and the supervisor's own."""

    def __init__(self, folder: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.registry.register(WorkersCollector(folder))
        self.restarts = Counter("zoo_worker_restarts", "Worker processes replaced after they died "
                                "(crash, OOM kill, kill -9)", registry=self.registry)
        self.workers = Gauge("zoo_workers", "Worker processes serving now (loaded and listening)",
                             registry=self.registry)


class Supervisor:
    def __init__(self, config: ServeConfig, shutdown_fd: int) -> None:
        self.config = config
        self.shutdown_fd = shutdown_fd
        self.cpus = available_cpus()
        self.context = multiprocessing.get_context("spawn")
        self.workers = [Worker(n) for n in range(1, config.workers + 1)]
        self.reservations: list[socket.socket] = []
        self.ports: dict[str, int] = {}
        self.metrics: SupervisorMetrics | None = None
        self.metrics_port: int | None = None
        self.metrics_dir: str | None = None
        self.fleet_ready = False
        self.ready_before = False
        self.started = False  # every worker has loaded once: from then on, a worker that dies is replaced
        self.models: tuple[int, int] = (0, 0)  # ready, in all: as the first worker to load found them

    # -- start ------------------------------------------------------------------------------

    def reserve(self) -> None:
        """The ports and the metrics endpoint, before any worker starts: a port in use
        fails here, in one line."""
        config = self.config
        for name, front in (("grpc", config.grpc), ("http", config.http)):
            if front is not None:
                reservation = reserve_port(config.host, front.port, name)
                self.reservations.append(reservation)
                self.ports[name] = reservation.getsockname()[1]
        if config.metrics_port is not None:
            self.metrics_dir = tempfile.mkdtemp(prefix="serve-metrics-")
            os.environ[METRICS_DIR_ENV] = self.metrics_dir  # the workers inherit it
            self.metrics = SupervisorMetrics(self.metrics_dir)
            self.metrics_port = self.metrics.serve(config.metrics_port, config.host)

    def spawn(self, worker: Worker) -> None:
        ours, theirs = self.context.Pipe()
        # A replacement joins a server that is ready as ready: the kernel sends it new
        # connections as soon as it listens, before the supervisor's word could reach it.
        config = worker_config(self.config, worker.number, self.ports, self.cpus, self.fleet_ready)
        process = self.context.Process(target=run_worker, args=(config, theirs), name=f"serve-worker-{worker.number}")
        process.start()
        theirs.close()
        worker.process, worker.conn, worker.started_at, worker.restart_at = process, ours, time.monotonic(), None

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until a signal, then drain; the exit code."""
        try:
            self.reserve()
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            self.release()
            return 1
        try:
            for worker in self.workers:
                self.spawn(worker)
            fault = self.watch()
            drained = self.drain(quietly=fault is not None)
            return drained if fault is None else fault
        finally:
            self.kill_all()
            self.release()

    def watch(self) -> int | None:
        """Until a shutdown signal (None) or a fault in the first start (its exit code)."""
        while True:
            waiting = {self.shutdown_fd: None}
            for worker in self.workers:
                if worker.process is not None:
                    waiting[worker.conn] = worker
                    waiting[worker.process.sentinel] = worker
            due = [w.restart_at for w in self.workers if w.restart_at is not None]
            ready = wait(list(waiting), max(0.0, min(due) - time.monotonic()) if due else None)
            if self.shutdown_fd in ready:
                name = process.wait_for_shutdown_signal(self.shutdown_fd)  # readable: no wait
                log.info("%s: draining: every worker refuses new requests and gives those received %.1f s to finish",
                         name, self.config.grace)
                return None
            for source in sorted(ready, key=lambda s: isinstance(s, int)):  # messages before deaths
                worker = waiting[source]
                if worker.process is None:
                    continue  # already seen dead in this round
                fault = self.on_message(worker) if isinstance(source, Connection) else self.on_death(worker)
                if fault is not None:
                    return fault
            now = time.monotonic()
            for worker in self.workers:
                if worker.restart_at is not None and worker.restart_at <= now:
                    self.spawn(worker)

    def on_message(self, worker: Worker) -> int | None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return None  # it is exiting: its sentinel tells the rest
        if isinstance(message, StartFailed):
            if not self.started:  # the first start: as the single process, one line and its code
                print(f"error: {message.message}", file=sys.stderr)
                return message.exit_code
            log.error("worker %d could not start again: %s", worker.number, message.message)
            worker.state = State.UNREADY
        elif isinstance(message, Loaded):
            worker.state = State.READY if message.ready else State.UNREADY
            self.models = (message.models_ready, message.models)
            if self.started:
                log.info("worker %d (pid %d) is serving", worker.number, worker.process.pid)
            self.tell(worker, self.fleet_ready)
            self.update_readiness()
        return None

    def on_death(self, worker: Worker) -> int | None:
        process = worker.process
        process.join()
        if worker.conn.poll():  # a last word (StartFailed) sent just before it exited
            fault = self.on_message(worker)
            if fault is not None:
                return fault
        worker.conn.close()
        worker.process = worker.conn = None
        lived = time.monotonic() - worker.started_at
        if not self.started:  # died while the server was first loading: as a start-up fault
            print(f"error: worker {worker.number} {describe_exit(process.exitcode)} while loading its models",
                  file=sys.stderr)
            return 1
        worker.quick_deaths = worker.quick_deaths + 1 if lived < STABLE_S else 0
        delay = 0.0 if worker.quick_deaths <= 1 else min(FIRST_BACKOFF_S * 2 ** (worker.quick_deaths - 2),
                                                            MAX_BACKOFF_S)
        worker.restart_at = time.monotonic() + delay
        if worker.state == State.READY:
            worker.state = State.REPLACING
        if self.metrics is not None:
            self.metrics.restarts.inc()
        log.error("worker %d (pid %d) %s after %.1f s; replacing it%s", worker.number, process.pid,
                  describe_exit(process.exitcode), lived,
                  f" in {delay:g} s ({worker.quick_deaths} quick deaths in a row)" if delay else "")
        self.update_readiness()
        return None

    def update_readiness(self) -> None:
        """The one rule over the workers: tell them when it changes. The serving line once
        every worker has loaded (ready or not, as the single process says it)."""
        states = [w.state for w in self.workers]
        if self.metrics is not None:
            self.metrics.workers.set(states.count(State.READY))
        if not self.started and State.STARTING not in states:
            self.started = True
            self.log_serving()
        ready = fleet_ready(states)
        if ready == self.fleet_ready:
            return
        self.fleet_ready = ready
        for worker in self.workers:
            if worker.process is not None and worker.state != State.STARTING:
                self.tell(worker, ready)
        if self.ready_before:
            log.warning("the server is %s", "ready again" if ready else
                        "not ready: " + ", ".join(f"worker {w.number} {w.state.value}" for w in self.workers
                                                  if w.state not in (State.READY, State.REPLACING)))
        self.ready_before = self.ready_before or ready

    def tell(self, worker: Worker, ready: bool) -> None:
        try:
            worker.conn.send(FleetReady(ready))
        except OSError:
            pass  # it has just died: its sentinel tells

    def log_serving(self) -> None:
        """The single process's serving line, once for the whole server, with the workers."""
        config, (ready, models) = self.config, self.models
        schemes = {"grpc": "grpcs" if config.grpc and config.grpc.tls_cert else "grpc", "http": "http"}
        addresses = {name: f"{schemes[name]}://{config.host}:{port}" for name, port in self.ports.items()}
        threads = config.models.ort_threads or default_ort_threads(config.workers, self.cpus)
        pids = ", ".join(str(w.process.pid) for w in self.workers if w.process)
        log.info("%s", process.serving_line(
            config, ready, models, addresses, self.metrics_port,
            f"; {len(self.workers)} workers (pids {pids}) on {self.cpus} CPUs, onnxruntime threads {threads} "
            f"per model in each"))
        if "http" in self.ports:
            process.log_http(config.host, self.ports["http"])

    # -- the end ----------------------------------------------------------------------------

    def stop_all(self) -> None:
        """SIGTERM to every worker: each drains as one server does."""
        for worker in self.workers:
            worker.restart_at = None
            if worker.process is not None and worker.process.exitcode is None:
                try:
                    os.kill(worker.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def drain(self, quietly: bool = False) -> int:
        """Unready at once everywhere, then SIGTERM to every worker; 0 once all have exited
        within --grace plus the margin, 1 if one had to be killed."""
        self.fleet_ready = False
        for worker in self.workers:
            if worker.process is not None:
                self.tell(worker, False)
        self.stop_all()
        deadline = time.monotonic() + self.config.grace + SHUTDOWN_MARGIN_S
        running = [w.process for w in self.workers if w.process is not None]
        while running and time.monotonic() < deadline:
            wait([p.sentinel for p in running], deadline - time.monotonic())
            running = [p for p in running if p.exitcode is None]
        if running:
            log.error("%s still running %.0f s after the signal: killed", process.plural(len(running), "worker"),
                      self.config.grace + SHUTDOWN_MARGIN_S)
            return 1
        if not quietly:
            log.info("stopped")
        return 0

    def kill_all(self) -> None:
        """No process left behind: whatever still runs is killed and reaped."""
        for worker in self.workers:
            process = worker.process
            if process is not None:
                if process.exitcode is None:
                    process.kill()
                process.join(10)
                worker.process = None

    def release(self) -> None:
        for reservation in self.reservations:
            reservation.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def supervise(config: ServeConfig, shutdown_fd: int) -> int:
    """Run config.workers worker processes until a signal; the exit code."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(log_format("supervisor")))
    return Supervisor(config, shutdown_fd).run()
