"""The HTTP front end's settings: importable without aiohttp, so the command line parses its
arguments before the HTTP stack loads."""

from __future__ import annotations

from dataclasses import dataclass

MAX_BODY_BYTES = 32 * 1024 * 1024  # as gRPC's message limit: 1,024 float32 images are 3.2 MB (13 MB as JSON)


@dataclass(frozen=True)
class HttpConfig:
    port: int = 8000  # Triton's HTTP port
    host: str = "127.0.0.1"  # loopback unless told otherwise
    cors_origins: tuple[str, ...] = ()  # none: browsers on other origins are refused
    workers: int = 32  # threads for decoding and inference: the cap on requests served at once
    max_body: int = MAX_BODY_BYTES
