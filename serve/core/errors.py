"""A client's mistake, carried from the core to a front end, which sends it as its own
status (gRPC status code, HTTP status). The core never names a protocol's codes."""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """Why a request failed, in the KServe/gRPC vocabulary every front end maps from."""

    INVALID_ARGUMENT = "invalid argument"  # the request is malformed
    NOT_FOUND = "not found"  # no such model or version
    FAILED_PRECONDITION = "failed precondition"  # valid, but not for this model (ask another API)
    RESOURCE_EXHAUSTED = "resource exhausted"  # over a limit of this server
    UNAVAILABLE = "unavailable"  # not ready, or shutting down: retry elsewhere or later
    DEADLINE_EXCEEDED = "deadline exceeded"
    CANCELLED = "cancelled"


class RequestError(Exception):
    def __init__(self, code: Code, message: str, *, busy: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # RESOURCE_EXHAUSTED because the server is busy now (a full queue), not because the
        # request is too large: worth retrying as it is (HTTP 429 rather than 413).
        self.busy = busy


def invalid(message: str) -> RequestError:
    return RequestError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> RequestError:
    return RequestError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> RequestError:
    return RequestError(Code.FAILED_PRECONDITION, message)


def too_large(message: str) -> RequestError:
    return RequestError(Code.RESOURCE_EXHAUSTED, message)


def too_busy(message: str) -> RequestError:
    return RequestError(Code.RESOURCE_EXHAUSTED, message, busy=True)


def unavailable(message: str) -> RequestError:
    return RequestError(Code.UNAVAILABLE, message)
