"""Admission at the gRPC edge: each inference call is admitted by the data plane as it
arrives, before it waits for a handler thread, and its ticket ends when grpcio is done
with the call, however it ended (serve.core.admission says why a drain waits for that).

grpcio tells a servicer when its call ends (`context.add_callback`), but a call whose
client went away before its request had arrived never reaches the servicer. For that one
the ticket ends when grpcio's work for the call is over, through grpcio's per-method
thread pool hook (a behaviour's `experimental_thread_pool`, as grpcio's health servicer
uses it), which hands the work to the front end's own pool.
"""

from __future__ import annotations

from concurrent import futures

import grpc

from ..core.admission import Ticket
from ..core.calls import Call
from ..core.dataplane import DataPlane
from ..core.errors import RequestError
from .services import HANDLERS


def _refuse(request, context):
    context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")


class Admission(grpc.ServerInterceptor):
    """Runs as each request arrives, before it waits for a handler thread: the data plane
    admits it or refuses it (an inference call once draining has begun). Every request that
    arrived before runs to the end (within --grace); health, readiness (now false),
    metadata and reflection keep answering while the listener is open."""

    REFUSE = grpc.unary_unary_rpc_method_handler(_refuse)

    def __init__(self, plane: DataPlane, calls: dict[str, Call], pool: futures.ThreadPoolExecutor) -> None:
        self.plane = plane
        self.calls = calls  # method path -> Call: every method this front end serves
        self.inference = {method for method, c in calls.items() if c.inference}
        self.pool = pool  # the front end's handler threads

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method not in self.inference:
            return continuation(handler_call_details)
        try:
            ticket = self.plane.admit(self.calls[handler_call_details.method])
        except RequestError:  # draining
            return self.REFUSE
        # Every inference method is one of ours, registered: its handler is always found.
        return until_ended(continuation(handler_call_details), ticket, self.pool)


def until_ended(handler: grpc.RpcMethodHandler, ticket: Ticket, pool: futures.ThreadPoolExecutor):
    """`handler` with `ticket` ended when its call ends."""
    behaviour = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    work = _EndingPool(pool, ticket)

    def ends_with_the_call(request, context):
        work.reached_servicer = True  # from now on grpcio's callback ends the ticket, once the status is sent
        if not context.add_callback(ticket.end):  # False: the call has already ended
            ticket.end()
        return behaviour(request, context)

    ends_with_the_call.experimental_thread_pool = work
    return HANDLERS[handler.request_streaming, handler.response_streaming](
        ends_with_the_call, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)


class _EndingPool(futures.ThreadPoolExecutor):
    """What grpcio takes for one admitted call's thread pool: it runs the call's work on the
    front end's pool, and ends the ticket once that work is over if the call never reached
    its servicer (the client cancelled, or its deadline passed, while the request was
    arriving or waiting for a thread). A call that did reach it ends when grpcio has sent
    its status, which may be after this work returns: its callback ends the ticket then.

    It has no threads or queue of its own: grpcio calls only `submit`, and takes it for a
    pool only if it is a ThreadPoolExecutor."""

    def __init__(self, pool: futures.ThreadPoolExecutor, ticket: Ticket) -> None:  # no super().__init__()
        self._pool = pool
        self._ticket = ticket
        self.reached_servicer = False

    def submit(self, fn, /, *args, **kwargs):
        def run():
            try:
                return fn(*args, **kwargs)
            finally:
                if not self.reached_servicer:
                    self._ticket.end()

        return self._pool.submit(run)
