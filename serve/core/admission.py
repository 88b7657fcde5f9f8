"""The inference calls admitted and not yet ended: what a drain waits for before it closes
any listener.

A front end takes a Ticket as an inference call arrives (DataPlane.admit) and ends it once
the call has ended: answered, failed or cancelled, whether or not its handler ever ran. A
drain refuses new inference calls and waits for every ticket to end (within --grace)
before it stops a front end. Closing the listeners first would not lose a request by
itself, but grpc core closes a connection the moment its last call ends after the final
GOAWAY, and a response the client had not read yet is then lost to a TCP reset (the
client sees UNAVAILABLE "Connection reset by peer"). Triton waits for its in-flight
inferences the same way before it stops its endpoints.
"""

from __future__ import annotations

import threading
import time


class OpenCalls:
    """How many inference calls were admitted and have not ended."""

    def __init__(self) -> None:
        self._open = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # told when the last open call ends

    def __len__(self) -> int:
        return self._open

    def open(self) -> Ticket:
        with self._lock:
            self._open += 1
        return Ticket(self)

    def _end(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._calls is None:
                return  # ended already, from another thread
            ticket._calls = None
            self._open -= 1
            if not self._open:
                self._changed.notify_all()

    def wait_all_ended(self, timeout: float) -> bool:
        """Until no admitted call is open (True) or `timeout` seconds have passed (False)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._open:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True


class Ticket:
    """One admitted inference call; `end()` may be called any number of times, from any
    thread, and counts once."""

    __slots__ = ("_calls",)

    def __init__(self, calls: OpenCalls | None) -> None:
        self._calls = calls

    def end(self) -> None:
        calls = self._calls
        if calls is not None:
            calls._end(self)


UNCOUNTED = Ticket(None)  # what any call that is not an inference call is admitted with
