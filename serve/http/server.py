"""The HTTP front end's life: its socket is bound when it is built (so a port in use fails
at start-up, like gRPC's), and it serves on its own thread with its own asyncio event loop;
blocking work runs in its own worker threads. serve.server starts and drains it.

    front = HttpFrontEnd(plane, HttpConfig(port=0), host="127.0.0.1")
    front.start(); ...; front.stop(grace=5.0, margin=1.0)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ..config import HttpConfig
from ..core.dataplane import DataPlane
from . import parser_log
from .app import build_app

log = logging.getLogger("serve")

class HttpFrontEnd:
    name = "http"

    def __init__(self, plane: DataPlane, config: HttpConfig, host: str) -> None:
        self.plane = plane
        self.config = config
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:  # one of several worker processes on this port
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            self._socket.bind((host, config.port))
        except OSError as e:
            self._socket.close()
            raise OSError(f"cannot bind HTTP {host}:{config.port} ({e.strerror or e})") from None
        self.port = self._socket.getsockname()[1]
        self.scheme = "http"
        self._executor = ThreadPoolExecutor(config.threads, thread_name_prefix="http")
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app = build_app(self.plane, self._executor, self.config)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        started = threading.Event()

        async def serve() -> None:
            await self._runner.setup()
            parser_log.install(self._runner)
            await web.SockSite(self._runner, self._socket).start()
            started.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="http-loop", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the HTTP front end did not start within 10 s")

    def readiness_changed(self) -> None:
        """Nothing to do: /v2/health/ready asks the readiness rule on every request."""

    def begin_drain(self) -> None:
        """Nothing to do at once: the data plane is draining, so inference calls get 503 and
        /v2/health/ready says 503."""

    def stop(self, grace: float | None, margin: float) -> bool:
        """Stop listening, give in-flight requests `grace` seconds, then end the loop; True
        if it all finished within `margin` seconds more. The data plane is already
        draining: requests arriving meanwhile get 503."""
        if self._thread is None:
            self._socket.close()
            self._executor.shutdown(wait=False)
            self._loop.close()
            return True
        self._runner._shutdown_timeout = max(grace or 0.0, 0.1)  # aiohttp takes it only at construction
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        done = True
        try:
            future.result(timeout=(grace or 0) + margin)
        except Exception as e:  # the loop could not finish in time: in-flight requests are cut
            done = False
            log.warning("HTTP front end: its shutdown did not finish within --grace %.1f s + %.1f s (%s)",
                        grace or 0.0, margin, type(e).__name__)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(margin)
        if not self._thread.is_alive():
            self._loop.close()  # its selector and self-pipe, once per server
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._thread = None
        return done
