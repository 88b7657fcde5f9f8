"""A log line that a client could provoke at will, at most once per interval."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last = -1e9
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, message: str, *args) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        more = f" ({suppressed} more like it in the last {self.interval_s:g} s not logged)" if suppressed else ""
        self.logger.warning(message + more, *args)
