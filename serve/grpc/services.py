"""Registering the servicers ourselves, as grpc's generated add_*Servicer_to_server does,
with two differences: a request body that is not a valid message becomes an Undecodable
(answered INVALID_ARGUMENT by the handler wrapper) instead of grpcio's INTERNAL and a
traceback per request; and only the methods we implement are registered, so any other is
grpc's own UNIMPLEMENTED, without the generated base class's exception in the log."""

from __future__ import annotations

import grpc
from google.protobuf import message_factory


class Undecodable:
    """What the deserializer hands on for a body that does not parse as the request message."""

    __slots__ = ("message_type", "size", "reason")

    def __init__(self, message_type: str, size: int, reason: str) -> None:
        self.message_type, self.size, self.reason = message_type, size, reason

    def describe(self) -> str:
        return (f"request body ({self.size} bytes) is not a valid {self.message_type} message ({self.reason}); "
                "expected a serialized protobuf of that type")


def _safe_parser(message_class):
    parse = message_class.FromString
    name = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes):
        try:
            return parse(data)
        except Exception as e:  # protobuf's DecodeError, or anything else its parser raises
            text = str(e).strip()
            return Undecodable(name, len(data), text.splitlines()[0][:200] if text else type(e).__name__)

    return deserialize


def add_service(server: grpc.Server, servicer, service) -> None:
    """Register `servicer`'s own unary methods of `service` (a ServiceDescriptor)."""
    handlers = {}
    for method in service.methods:
        if method.client_streaming or method.server_streaming or method.name not in vars(type(servicer)):
            continue
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_safe_parser(message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
