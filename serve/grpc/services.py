"""Registering every service ourselves, ours and grpcio's standard ones alike, as grpc's
generated add_*Servicer_to_server does, with two differences:

- a request body that is not a valid message becomes an Undecodable instead of grpcio's
  INTERNAL and a traceback per request: our servicers' handler wrapper answers it
  INVALID_ARGUMENT; for the standard services (health, reflection), which cannot know of
  it, `guard` does, before their code sees it (in a stream, at the message that is bad);
- only the methods a servicer implements are registered, so any other is grpc's own
  UNIMPLEMENTED, without the generated base class's exception in the log.
"""

from __future__ import annotations

from typing import Callable

import grpc
from google.protobuf import message_factory

from ..core.ratelimit import RateLimitedLog

HANDLERS = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}


class Undecodable:
    """What the deserializer hands on for a body that does not parse as the request message."""

    __slots__ = ("message_type", "size", "reason")

    def __init__(self, message_type: str, size: int, reason: str) -> None:
        self.message_type, self.size, self.reason = message_type, size, reason

    def describe(self) -> str:
        return (f"request body ({self.size} bytes) is not a valid {self.message_type} message ({self.reason}); "
                "expected a serialized protobuf of that type")


def _safe_parser(message_class, name: str):
    parse = message_class.FromString

    def deserialize(data: bytes):
        try:
            return parse(data)
        except Exception as e:  # protobuf's DecodeError, or anything else its parser raises
            text = str(e).strip()
            return Undecodable(name, len(data), text.splitlines()[0][:200] if text else type(e).__name__)

    return deserialize


# Told of each undecodable request to a standard service: (service, method, the request).
Refused = Callable[[str, str, Undecodable], None]


def guard(behaviour, client_streaming: bool, service: str, method: str, refused: Refused):
    """A standard servicer's method that answers an undecodable request INVALID_ARGUMENT
    (aborting the stream at a bad message) and reports it, before the servicer sees it."""

    def refuse(request: Undecodable, context) -> None:
        refused(service, method, request)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.describe())

    if client_streaming:
        def checked(requests, context):
            def messages():
                for request in requests:
                    if type(request) is Undecodable:
                        refuse(request, context)
                    yield request

            return behaviour(messages(), context)
    else:
        def checked(request, context):
            if type(request) is Undecodable:
                refuse(request, context)
            return behaviour(request, context)

    return checked


def add_service(server: grpc.Server, servicer, service, *, named_as=None, refused: Refused | None = None) -> None:
    """Register `servicer`'s own methods of `service` (a ServiceDescriptor), or of
    `named_as`, another service whose messages are the same field for field (reflection v1
    for v1alpha): its methods, parsed into `service`'s messages, which `servicer` takes.
    `refused`: the servicer is a standard one; undecodable requests are answered by `guard`."""
    named = named_as or service
    full_name = named.full_name
    handlers = {}
    for method in service.methods:
        if method.name not in vars(type(servicer)):
            continue  # not implemented here (only in the generated base): grpc's own UNIMPLEMENTED
        kind = (method.client_streaming, method.server_streaming)
        behaviour = getattr(servicer, method.name)
        if refused is not None:
            behaviour = guard(behaviour, method.client_streaming, full_name, method.name, refused)
        handlers[method.name] = HANDLERS[kind](
            behaviour, request_deserializer=_safe_parser(message_factory.GetMessageClass(method.input_type),
                                                         named.methods_by_name[method.name].input_type.full_name),
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(full_name, handlers),))
    server.add_registered_method_handlers(full_name, handlers)


def refusal_reporter(metrics, log) -> Refused:
    """Undecodable requests to the standard services counted and logged (rate-limited) as ours are."""
    limited = RateLimitedLog(log)

    def refused(service: str, method: str, request: Undecodable) -> None:
        metrics.observe_undecodable(service.rsplit(".", 1)[-1].lower(), method)
        limited.warning("%s.%s: %s", service, method, request.describe())

    return refused

