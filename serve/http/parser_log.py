"""What aiohttp's own HTTP parser refuses (a malformed request line or header, a bad
chunk): aiohttp answers those itself, before any route or middleware, as text/plain, and
logs each at ERROR with a traceback. A client can provoke that at will, so here such a
refusal is answered as every other error is, `{"error": ...}` in application/json, and
logged as one rate-limited line with its reason; any other aiohttp error stays as is."""

from __future__ import annotations

import json
import logging

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError

from ..core.ratelimit import RateLimitedLog

log = logging.getLogger("serve")
_refusals = RateLimitedLog(log)


def _reason(error: HttpProcessingError) -> str:
    return " ".join(error.message.split())[:200] or type(error).__name__


class ParserRefusals(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            _refusals.warning("HTTP: refused a malformed request (%d, %s)", error.code, _reason(error))
            return False
        return True


class JsonRefusals(web_protocol.RequestHandler):
    """aiohttp's connection handler, answering its parser's refusals in our error shape."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)  # logs (filtered above), checks
        if not isinstance(exc, HttpProcessingError):
            return response
        text = f"malformed HTTP request: {_reason(exc)}"
        refusal = web.Response(status=status, body=json.dumps({"error": text}).encode(),
                               content_type="application/json")
        refusal.force_close()
        return refusal


class JsonRefusalServer(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return JsonRefusals(self, loop=self._loop, **self._kwargs)


def install(runner: web.AppRunner) -> None:
    """For a runner after setup(): its connections answer parser refusals as JSON, and
    aiohttp's log of them becomes our line. (aiohttp has no option for its error page; its
    server's class is swapped for a subclass that makes our connection handler.)"""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ParserRefusals) for f in logger.filters):
        logger.addFilter(ParserRefusals())
    runner.server.__class__ = JsonRefusalServer
