"""The one place where the core's RequestError becomes a gRPC status, and every servicer
method's outcome a metric."""

from __future__ import annotations

import functools
import logging
import time

import grpc

from ..core.errors import Code, RequestError, invalid
from ..core.ratelimit import RateLimitedLog
from .services import Undecodable

log = logging.getLogger("serve")
undecodable_log = RateLimitedLog(log)

STATUS = {code: grpc.StatusCode[code.name] for code in Code}


def handler(api: str, method: str, model_field: str | None = None):
    """Wrap a servicer method: RequestError -> its status, anything else -> INTERNAL (logged),
    and every outcome counted and timed in the metrics."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(self, request, context):
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if type(request) is Undecodable:
                    self.core.metrics.observe_undecodable(api, method)
                    undecodable_log.warning("%s.%s: %s", api, method, request.describe())
                    raise invalid(request.describe())
                return fn(self, request, context)
            except RequestError as e:
                code = STATUS[e.code]
                context.abort(code, e.message)
            except Exception as e:  # a bug of ours, never the client's mistake
                code = grpc.StatusCode.INTERNAL
                log.exception("%s.%s failed", api, method)
                context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}")
            finally:
                model = getattr(request, model_field, "") if model_field else ""
                self.core.metrics.observe_request(api, method, self.core.metric_label(model) if model else "",
                                                  code.name, time.perf_counter() - start)

        return wrapper

    return decorate


def infer_args(context: grpc.ServicerContext) -> dict:
    """The client's deadline and presence, as the core takes them."""
    return {"time_left_s": context.time_remaining(), "is_active": context.is_active}
