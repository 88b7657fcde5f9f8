"""aiohttp logs every request its HTTP parser refuses (a malformed request line or header)
at ERROR with a traceback; it has already answered 400. A client can provoke that at will,
so such records become one rate-limited warning line; any other aiohttp error stays as is."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

from ..core.ratelimit import RateLimitedLog

log = logging.getLogger("serve")
_refusals = RateLimitedLog(log)


class ParserRefusals(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            _refusals.warning("HTTP: refused a malformed request (%s)", str(error).splitlines()[0][:200])
            return False
        return True


def install() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ParserRefusals) for f in logger.filters):
        logger.addFilter(ParserRefusals())
