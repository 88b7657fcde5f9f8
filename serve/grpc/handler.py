"""The one place where the core's RequestError becomes a gRPC status, and every servicer
method's outcome a metric; and what each method is (its serve.core.calls Call)."""

from __future__ import annotations

import functools
import logging
import time

import grpc

from ..core.calls import Call, call
from ..core.errors import Code, RequestError, invalid
from ..core.ratelimit import RateLimitedLog
from ..core.records import Deadline
from . import tracing
from .services import Undecodable

log = logging.getLogger("serve")
undecodable_log = RateLimitedLog(log)

STATUS = {code: grpc.StatusCode[code.name] for code in Code}


def handler(api: str, method: str, call_name: str, model_field: str | None = None):
    """Wrap a servicer method that is the call `call_name`: RequestError -> its status,
    anything else -> INTERNAL (logged), and every outcome counted and timed in the metrics
    (and, for an inference call with tracing on, traced: serve.grpc.tracing).
    The wrapper carries its Call (`.call`) for admission."""
    declared = call(call_name)
    traced_as = tracing.rpc_method(api, method) if declared.inference else ""  # inference calls are traced

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(self, request, context):
            start = time.perf_counter()
            code, message = grpc.StatusCode.OK, ""
            plane = self.plane
            model = getattr(request, model_field, "") if model_field else ""
            trace = (tracing.begin(plane.tracing, traced_as, context, start, model)
                     if traced_as and plane.tracing is not None else None)
            try:
                if type(request) is Undecodable:
                    plane.metrics.observe_undecodable(api, method)
                    undecodable_log.warning("%s.%s: %s", api, method, request.describe())
                    raise invalid(request.describe())
                return fn(self, request, context)
            except RequestError as e:
                code, message = STATUS[e.code], e.message
                context.abort(code, e.message)
            except Exception as e:  # a bug of ours, never the client's mistake
                code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}"
                log.exception("%s.%s failed", api, method)
                context.abort(grpc.StatusCode.INTERNAL, message)
            finally:
                plane.metrics.observe_request(api, method, plane.registry.metric_label(model) if model else "",
                                              code.name, time.perf_counter() - start)
                if trace is not None:
                    tracing.end(trace, code, message)

        wrapper.call = declared
        return wrapper

    return decorate


def call_of(servicer, method: str) -> Call | None:
    """The Call a servicer's method was declared as (None: not a handler of ours)."""
    return getattr(getattr(type(servicer), method, None), "call", None)


def deadline(context: grpc.ServicerContext) -> Deadline:
    """The client's deadline and presence, as the core takes them."""
    return Deadline(context.time_remaining(), context.is_active)
