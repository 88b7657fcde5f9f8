"""What every HTTP handler needs: the data plane, the model named in the path, whether the
client is still there, and a way to run blocking work (decoding, onnxruntime) off the
event loop, in the front end's worker threads."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Callable

from aiohttp import web

from ..config import HttpConfig
from ..core.dataplane import DataPlane

PLANE = web.AppKey("plane", DataPlane)
EXECUTOR = web.AppKey("executor", Executor)
CONFIG = web.AppKey("config", HttpConfig)  # the front end's settings, for any handler that needs one


def plane_of(request: web.Request) -> DataPlane:
    return request.app[PLANE]


def model_of(request: web.Request) -> tuple[str, str]:
    return request.match_info["model"], request.match_info.get("version", "")


def client_present(request: web.Request) -> Callable[[], bool]:
    """False once the client has closed its connection: its images are dropped unrun."""
    def present() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return present


async def blocking(request: web.Request, fn, *args):
    return await asyncio.get_running_loop().run_in_executor(request.app[EXECUTOR], fn, *args)
