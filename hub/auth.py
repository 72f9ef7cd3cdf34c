"""Authorisation of every RPC, before dispatch, by the peer certificate alone.

`METHOD_RULES` names who may call each method; a method not in it is refused
(deny by default). The interceptor wraps every handler, implemented or not, so the
rules hold for RPCs that later issues implement too. The identity it verified is
available to handlers through `current_identity()`; nothing a client sends can
change it. Expected errors raised by handlers become rich statuses here, the one
place where `SentinelError` meets gRPC.
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from hub.errors import abort, abort_with_error
from sentinel.errors import PermissionDenied, SentinelError
from sentinel.identity import Identity, Role, identity_from_pem

log = logging.getLogger(__name__)


class Access(enum.Enum):
    """Who may call a method."""

    AUTHENTICATED = "any authenticated identity"
    NODE = "node"
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    NOBODY = "nobody on this listener"


_V1 = "/sentinel.v1."
METHOD_RULES: dict[str, Access] = {
    "/grpc.health.v1.Health/Check": Access.AUTHENTICATED,
    "/grpc.health.v1.Health/Watch": Access.AUTHENTICATED,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Access.AUTHENTICATED,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Access.AUTHENTICATED,
    f"{_V1}AgentService/Connect": Access.NODE,
    f"{_V1}AgentService/RenewCertificate": Access.NODE,
    f"{_V1}FleetService/ListNodes": Access.VIEWER,
    f"{_V1}FleetService/GetNode": Access.VIEWER,
    f"{_V1}FleetService/WatchTelemetry": Access.VIEWER,
    f"{_V1}FleetService/RecommendPlacement": Access.VIEWER,
    f"{_V1}CommandService/IssueCommand": Access.OPERATOR,
    f"{_V1}CommandService/GetCommand": Access.VIEWER,
    f"{_V1}CommandService/ListCommands": Access.VIEWER,
    f"{_V1}CommandService/WatchCommand": Access.VIEWER,
    f"{_V1}CommandService/ApproveCommand": Access.ADMIN,
    f"{_V1}KeyService/GetKeyset": Access.VIEWER,
    f"{_V1}KeyService/RotateCommandKey": Access.ADMIN,
    f"{_V1}KeyService/RetireKey": Access.ADMIN,
    f"{_V1}PolicyService/GetPolicy": Access.VIEWER,
    f"{_V1}PolicyService/PutPolicy": Access.ADMIN,
    f"{_V1}PolicyService/ListPolicyVersions": Access.VIEWER,
    f"{_V1}PolicyService/EvaluatePolicy": Access.VIEWER,
    f"{_V1}RolloutService/CreateRollout": Access.OPERATOR,
    f"{_V1}RolloutService/GetRollout": Access.VIEWER,
    f"{_V1}RolloutService/ListRollouts": Access.VIEWER,
    f"{_V1}RolloutService/WatchRollout": Access.VIEWER,
    f"{_V1}RolloutService/PauseRollout": Access.OPERATOR,
    f"{_V1}RolloutService/ResumeRollout": Access.OPERATOR,
    f"{_V1}RolloutService/PromoteRollout": Access.OPERATOR,
    f"{_V1}RolloutService/AbortRollout": Access.OPERATOR,
    # Enroll is served only on the enrollment listener, never here.
    f"{_V1}EnrollmentService/Enroll": Access.NOBODY,
    f"{_V1}EnrollmentService/CreateEnrollmentToken": Access.ADMIN,
    f"{_V1}EnrollmentService/ListEnrollments": Access.ADMIN,
    f"{_V1}EnrollmentService/ApproveEnrollment": Access.ADMIN,
    f"{_V1}EnrollmentService/RevokeCertificate": Access.ADMIN,
}

_USER_MINIMUM = {
    Access.VIEWER: Role.VIEWER,
    Access.OPERATOR: Role.OPERATOR,
    Access.ADMIN: Role.ADMIN,
}

_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar("sentinel_identity")


def current_identity() -> Identity:
    """The verified identity of the caller of the RPC being served."""
    return _identity.get()


def check_access(identity: Identity, access: Access, method: str) -> None:
    """Raise PermissionDenied unless `identity` may call `method`."""
    if access is Access.AUTHENTICATED:
        return
    if access is Access.NODE:
        if identity.role is Role.NODE:
            return
        raise PermissionDenied(f"{method} is for edge agents only", reason="NODE_ONLY")
    if access is Access.NOBODY:
        raise PermissionDenied(f"{method} is not served on this listener", reason="WRONG_LISTENER")
    if identity.role is Role.NODE:
        raise PermissionDenied(
            f"a node identity may only call AgentService, not {method}", reason="NODE_NOT_ALLOWED"
        )
    if identity.role < _USER_MINIMUM[access]:
        raise PermissionDenied(
            f"{method} needs role {access.value}; {identity.name} has {identity.role.name.lower()}",
            reason="ROLE_TOO_LOW",
        )


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps every handler with authentication, authorisation and error mapping."""

    def __init__(self, trust_domain: str) -> None:
        self._trust_domain = trust_domain

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        access = METHOD_RULES.get(method, Access.NOBODY)
        return _wrap_handler(handler, method, access, self._trust_domain)


def authenticate(context: grpc.aio.ServicerContext, trust_domain: str) -> Identity:
    """Identity from the verified peer certificate; raise PermissionDenied if unusable."""
    pems = (context.auth_context() or {}).get("x509_pem_cert") or []
    if not pems:
        raise PermissionDenied("no client certificate", reason="UNAUTHENTICATED")
    return identity_from_pem(pems[0], trust_domain)


async def _authorize(
    context: grpc.aio.ServicerContext, method: str, access: Access, trust_domain: str
) -> contextvars.Token[Identity]:
    try:
        identity = authenticate(context, trust_domain)
        check_access(identity, access, method)
    except PermissionDenied as exc:
        log.info("refused %s: %s", method, exc)
        await abort(context, grpc.StatusCode.PERMISSION_DENIED, exc.message, exc.reason)
        raise  # unreachable: abort raises
    return _identity.set(identity)


_HANDLER_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def _wrap_handler(handler: Any, method: str, access: Access, trust_domain: str) -> Any:
    for kind, make_handler in _HANDLER_KINDS:
        inner = getattr(handler, kind)
        if inner is not None:
            return make_handler(
                _guard(inner, method, access, trust_domain),
                handler.request_deserializer,
                handler.response_serializer,
            )
    return None


def _guard(inner: Any, method: str, access: Access, trust_domain: str) -> Any:
    """Authorise, then run `inner`, mapping SentinelError to a rich status. Behaviours are
    async generators (streams we write) or coroutines (unary ones, and streams that call
    context.write, like grpc's health Watch); the guard keeps the shape grpc dispatches on."""
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await _authorize(context, method, access, trust_domain)
            try:
                async for response in inner(request, context):
                    yield response
            except SentinelError as exc:
                await abort_with_error(context, exc)

        return generator

    async def coroutine(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _authorize(context, method, access, trust_domain)
        try:
            return await inner(request, context)
        except SentinelError as exc:
            await abort_with_error(context, exc)

    return coroutine
