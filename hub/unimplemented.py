"""Handlers for RPCs that later issues implement: each answers UNIMPLEMENTED.

Built from the service descriptors, with the right streaming shape per method, so
that they register like real servicers and sit behind the same authorisation.
A real servicer registered later for the same service replaces them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from hub.errors import abort


def unimplemented_service(service: ServiceDescriptor) -> grpc.GenericRpcHandler:
    handlers = {method.name: _handler(service.full_name, method) for method in service.methods}
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _handler(service_name: str, method: Any) -> grpc.RpcMethodHandler:
    message = f"{service_name}/{method.name} is not implemented yet"
    deserialize = _deserializer(method.input_type)

    async def answer(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort(context, grpc.StatusCode.UNIMPLEMENTED, message, "NOT_IMPLEMENTED")

    async def answer_stream(_request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await abort(context, grpc.StatusCode.UNIMPLEMENTED, message, "NOT_IMPLEMENTED")
        yield None  # unreachable: makes this an async generator

    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(answer_stream, deserialize)
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(answer, deserialize)
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(answer_stream, deserialize)
    return grpc.unary_unary_rpc_method_handler(answer, deserialize)


def _deserializer(message_descriptor: Any) -> Any:
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(message_descriptor)
    return cls.FromString
