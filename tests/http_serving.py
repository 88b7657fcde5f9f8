"""A real server with both front ends on 127.0.0.1, ports 0, for the HTTP tests."""

from __future__ import annotations

import contextlib

from serve.core import Limits
from serve.http.config import HttpConfig
from serve.server import create_server


@contextlib.contextmanager
def running_both(models_dir, cors_origins=(), **overrides):
    """Yields (server, grpc port, http port)."""
    limits = overrides.pop("limits", Limits())
    server, port = create_server(models_dir=models_dir, host="127.0.0.1", port=0, limits=limits,
                                 http=HttpConfig(port=0, cors_origins=tuple(cors_origins)), **overrides)
    server.start()
    try:
        yield server, port, server.front_ends["http"].port
    finally:
        server.stop(grace=1.0)
