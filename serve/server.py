"""The whole server: one core, the gRPC front end, and (with an HTTP port) the HTTP one.

    server, port = create_server(models_dir="models", port=0, http=HttpConfig(port=0))
    server.start()                      # both front ends
    server.front_ends["http"].port      # the HTTP port bound
    server.stop(grace=5.0)              # both drain together
"""

from __future__ import annotations

from .grpc.server import ServerConfig, ZooServer
from .grpc.server import create_server as create_grpc_server
from .http.config import HttpConfig


def create_server(config: ServerConfig | None = None, http: HttpConfig | None = None,
                  **overrides) -> tuple[ZooServer, int]:
    """As serve.grpc.server.create_server, plus the HTTP front end when `http` is given;
    returns the server and its gRPC port."""
    server, port = create_grpc_server(config, **overrides)
    if http is not None:
        from .http.server import HttpFrontEnd  # aiohttp loads only for a server that serves HTTP

        try:
            server.attach("http", HttpFrontEnd(server.core, http))
        except OSError:
            server.stop(grace=0)
            raise
    return server, port
