"""One worker process of several (serve.supervisor spawns each): the same server as
`python -m serve --workers 1`, on the ports every worker shares (SO_REUSEPORT), talking
to its supervisor over one pipe.

Worker to supervisor: Loaded once its models are loaded and it listens (or StartFailed,
with the exit code and one-line message the single process would print). Supervisor to
worker: FleetReady(True/False), the whole server's readiness, which this worker's health
and readiness answers follow. SIGTERM or SIGINT drains it as it drains one server; so does
the supervisor's end of the pipe closing (the supervisor is gone: no orphan serves on).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from . import process
from .config import ServeConfig
from .server import create_server

log = logging.getLogger("serve")


@dataclass(frozen=True)
class Loaded:
    ready: bool  # by the readiness rule, on this worker's own models
    models_ready: int
    models: int


@dataclass(frozen=True)
class StartFailed:
    exit_code: int  # what `python -m serve` would exit with: 2 for --models, 1 for the rest
    message: str


@dataclass(frozen=True)
class FleetReady:
    ready: bool


def log_format(name: str) -> str:
    """Every line says which process wrote it: 'worker 2 (pid 1234)' or 'supervisor'."""
    return f"%(asctime)s %(levelname)s {name}: %(message)s"


def run_worker(config: ServeConfig, conn: Connection) -> None:
    """The spawned process's entry point."""
    slot = config.worker
    logging.basicConfig(level=logging.INFO, format=log_format(f"worker {slot.number} (pid {os.getpid()})"))
    shutdown = process.catch_shutdown_signals()  # before loading: a SIGTERM meanwhile drains once started
    try:
        server = create_server(config)
    except process.START_UP_FAULTS as e:
        conn.send(StartFailed(process.exit_code_of(e), str(e)))
        sys.exit(process.exit_code_of(e))
    if slot.number == 1:
        process.log_models(server)  # every worker loads the same models: one says what they are
    process.settle()
    server.start()
    models = server.plane.registry.all_models()
    conn.send(Loaded(server.plane.readiness.own_ready(), sum(m.ready for m in models), len(models)))
    sys.exit(process.drain(server, config, follow_supervisor(server, conn, shutdown)))


def follow_supervisor(server, conn: Connection, shutdown: int) -> str:
    """Apply the supervisor's word on readiness until a signal comes or the supervisor is
    gone; returns which."""
    while True:
        for ready in wait([shutdown, conn]):
            if ready == shutdown:
                return process.wait_for_shutdown_signal(shutdown)
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return "the supervisor is gone"
            if isinstance(message, FleetReady):
                server.set_fleet_ready(message.ready)
