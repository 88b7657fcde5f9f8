"""`python -m serve` in its own process on a free loopback port, for benchmarks and tests,
and what /proc says of a process (memory, CPU time)."""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ADDRESS = re.compile(r"serving \d+ models? on (?:grpcs?|http)://([\d.]+:\d+)")
HTTP_ADDRESS = re.compile(r"HTTP on http://(\S+:\d+)")


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    address: str = ""
    lines: list[str] = field(default_factory=list)  # its log so far
    _reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def http_address(self, timeout: float = 10) -> str:
        """host:port of its HTTP front end (started with --http-port), from its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = HTTP_ADDRESS.search(line)
                if match:
                    return match.group(1)
            time.sleep(0.05)
        raise RuntimeError("the server logged no HTTP address:\n" + self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server, wait for it to exit, and return its exit code. One that has not
        exited within `timeout` is aborted, which makes it print every thread's stack
        (faulthandler), and ServerHung carries that and the rest of its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(10)
            self._join_reader()
            raise ServerHung(f"the server did not exit within {timeout:g} s of signal {sig}; "
                             f"its log and stacks:\n{self.output}") from None
        self._join_reader()
        return code

    def _join_reader(self) -> None:
        if self._reader:
            self._reader.join(10)


class ServerHung(AssertionError):
    """The server process did not exit when told to."""


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def in_client_process(target, *args, timeout: float = 600):
    """Run `target(*args, out_queue)` in a spawned process (a client apart from the servers
    and from this process's threads) and return what it put on the queue."""
    ctx = mp.get_context("spawn")
    out_queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out_queue))
    proc.start()
    result = out_queue.get(timeout=timeout)
    proc.join(30)
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (its children, theirs, ...), from /proc's children lists."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue  # the thread or process has just gone
            found += children
            todo += children
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of `pid` and every process below it (a supervisor and its workers)."""
    total = 0.0
    for process in [pid, *descendants(pid)]:
        try:
            total += cpu_seconds(process)
        except OSError:
            pass  # exited meanwhile
    return total


def models_dir_with(names: tuple[str, ...], directory: str | None) -> Path:
    """`directory` (or a new temporary one) holding `names`' .onnx files, the missing ones
    exported there from the shipped weights, unchecked."""
    from export.exporter import write_unchecked

    out = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="serve-bench-"))
    for name in names:
        if not (out / f"{name}.onnx").exists():
            write_unchecked(name, out)
    return out


def start_server(models_dir: Path, *extra: str, timeout: float = 60) -> ServerProcess:
    """Start the server on port 0 and return once its log names the address it bound (for
    several workers: once every worker has loaded). One process (--workers 1) unless
    `extra` says otherwise."""
    workers = [] if "--workers" in extra else ["--workers", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "serve", "--models", str(models_dir), "--port", "0", *workers,
                             *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # stacks on SIGABRT, for stop()
    server = ServerProcess(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        server.lines.append(line)
        match = ADDRESS.search(line)
        if match:
            server.address = match.group(1)
            # Keep reading, so the server never blocks on a full pipe and its log is kept.
            server._reader = threading.Thread(target=lambda: server.lines.extend(proc.stdout), daemon=True)
            server._reader.start()
            return server
    proc.kill()
    proc.wait(10)
    raise RuntimeError("the server did not start:\n" + server.output)
