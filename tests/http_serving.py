"""A real server with both front ends on 127.0.0.1, ports 0, for the HTTP tests."""

from __future__ import annotations

import contextlib

from serve.config import HttpConfig
from serve.server import create_server

from tests.serving import serve_config


@contextlib.contextmanager
def running_both(models_dir, cors_origins=(), **overrides):
    """Yields (server, grpc port, http port)."""
    server = create_server(serve_config(models_dir, http=HttpConfig(port=0, cors_origins=tuple(cors_origins)),
                                        **overrides))
    server.start()
    try:
        yield server, server.port("grpc"), server.port("http")
    finally:
        server.stop(grace=1.0)
