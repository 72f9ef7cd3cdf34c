"""Authorisation of every RPC, before dispatch, by the peer certificate alone.

`METHOD_RULES` names who may call each method; a method not in it is refused
(deny by default). The interceptor wraps every handler, implemented or not, so the
rules hold for RPCs that later issues implement too. The identity it verified is
available to handlers through `current_identity()`; nothing a client sends can
change it. Right after authorisation each call takes a slot in its identity's budgets
(`hub.budgets`) for as long as it runs; a call over budget is refused RESOURCE_EXHAUSTED
and counted, not audited (a flood of refusals must not grow the audit log). Expected
errors raised by handlers become rich statuses here, the one place where `SentinelError`
meets gRPC. State-changing calls, refused ones included, are recorded in the audit log
here too (`hub.audit_rpc`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from cryptography import x509

from hub.audit_rpc import UNAUTHENTICATED, RpcAudit
from hub.budgets import CallBudgets
from hub.errors import abort, abort_with_error
from sentinel.errors import PermissionDenied, ResourceExhausted, SentinelError
from sentinel.identity import Identity, Role, identity_from_certificate

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
    f"{_V1}AuditService/ListAuditRecords": Access.ADMIN,
    f"{_V1}AuditService/ExportAudit": Access.ADMIN,
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


class RevocationCheck(Protocol):
    def is_revoked(self, serial: str, identity: Identity) -> bool: ...


class _NothingRevoked:
    def is_revoked(self, serial: str, identity: Identity) -> bool:
        return False


class OpenCalls:
    """Streaming calls in progress, with the certificate that opened each, so that a
    revocation can end them (PERMISSION_DENIED, reason CERT_REVOKED)."""

    def __init__(self) -> None:
        self._calls: dict[asyncio.Task[Any], tuple[str, Identity]] = {}
        self._ended: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._calls)

    @contextlib.contextmanager
    def opened(self, serial: str, identity: Identity) -> Iterator[asyncio.Task[Any] | None]:
        task = asyncio.current_task()
        if task is not None:
            self._calls[task] = (serial, identity)
        try:
            yield task
        finally:
            if task is not None:
                self._calls.pop(task, None)
                self._ended.discard(task)

    def end_revoked(self, revocations: RevocationCheck) -> int:
        """Cancel every open call whose certificate is now revoked; returns how many."""
        ended = 0
        for task, (serial, identity) in list(self._calls.items()):
            if task not in self._ended and revocations.is_revoked(serial, identity):
                self._ended.add(task)
                task.cancel()
                ended += 1
        return ended

    def was_ended(self, task: asyncio.Task[Any] | None) -> bool:
        return task is not None and task in self._ended


@dataclass(frozen=True, slots=True)
class Gate:
    """What every RPC passes before its handler runs."""

    trust_domain: str
    revocations: RevocationCheck = field(default_factory=_NothingRevoked)
    calls: OpenCalls = field(default_factory=OpenCalls)
    # Records every state-changing RPC (hub.audit_rpc); None: not audited (unit tests).
    audit: RpcAudit | None = None


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps every handler with authentication, authorisation, budgets and error mapping."""

    def __init__(self, gate: Gate, budgets: CallBudgets) -> None:
        self._gate = gate
        self._budgets = budgets

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        access = METHOD_RULES.get(method, Access.NOBODY)
        return _wrap_handler(handler, method, access, self._gate, self._budgets)


def authenticate(context: grpc.aio.ServicerContext, trust_domain: str) -> tuple[Identity, str]:
    """Identity and hex serial of the verified peer certificate; raise PermissionDenied
    if it is unusable."""
    pems = (context.auth_context() or {}).get("x509_pem_cert") or []
    if not pems:
        raise PermissionDenied("no client certificate", reason="UNAUTHENTICATED")
    return _identity_of(pems[0], trust_domain)


@functools.lru_cache(maxsize=4096)
def _identity_of(pem: bytes, trust_domain: str) -> tuple[Identity, str]:
    """Parsed once per certificate, not once per call: a peer making thousands of calls
    on one certificate (a flood of refused streams) does not make the hub parse X.509
    each time. The answer depends on the certificate's bytes alone (a certificate that is
    no identity raises, and is not cached); revocation is checked on every call."""
    cert = x509.load_pem_x509_certificate(pem)
    return identity_from_certificate(cert, trust_domain), format(cert.serial_number, "x")


# How long a refused client-streaming call is given to deliver its first message.
REFUSAL_FIRST_MESSAGE_S = 1.0


async def _take_first_message(requests: AsyncIterator[Any]) -> None:
    """Read and drop a refused stream's first message, waiting at most
    REFUSAL_FIRST_MESSAGE_S. A streaming client (an agent's Connect) writes first; a refusal
    sent before that write has landed races it in gRPC core, and a client that loses sees its
    write fail (a local INTERNAL, or the status raised by the write) instead of reading why."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(REFUSAL_FIRST_MESSAGE_S):
            await anext(aiter(requests), None)


async def _authorize(
    context: grpc.aio.ServicerContext,
    method: str,
    access: Access,
    gate: Gate,
    requests: AsyncIterator[Any] | None = None,
) -> tuple[Identity, str]:
    """The caller's identity and certificate serial; refuse the call (PERMISSION_DENIED) if
    it may not make it. `requests`: a client-streaming call's messages, see
    `_take_first_message`."""
    caller = UNAUTHENTICATED
    try:
        identity, serial = authenticate(context, gate.trust_domain)
        caller = str(identity)
        if gate.revocations.is_revoked(serial, identity):
            raise PermissionDenied(
                f"certificate {serial} of {identity} is revoked", reason="CERT_REVOKED"
            )
        check_access(identity, access, method)
    except PermissionDenied as exc:
        log.info("refused %s: %s", method, exc)
        if requests is not None:
            await _take_first_message(requests)
        if gate.audit is not None and gate.audit.audits(method):
            await gate.audit.record(method, caller, grpc.StatusCode.PERMISSION_DENIED, exc.reason)
        await abort(context, grpc.StatusCode.PERMISSION_DENIED, exc.message, exc.reason)
        raise  # unreachable: abort raises
    _identity.set(identity)
    return identity, serial


async def _end_revoked(context: grpc.aio.ServicerContext, identity: Identity) -> None:
    await abort(
        context,
        grpc.StatusCode.PERMISSION_DENIED,
        f"the certificate of {identity} was revoked",
        "CERT_REVOKED",
    )


_HANDLER_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def _wrap_handler(
    handler: Any, method: str, access: Access, gate: Gate, budgets: CallBudgets
) -> Any:
    for kind, make_handler in _HANDLER_KINDS:
        inner = getattr(handler, kind)
        if inner is not None:
            streaming = kind.endswith("_stream")
            client_streaming = kind.startswith("stream_")
            return make_handler(
                _guard(
                    inner,
                    method,
                    access,
                    gate,
                    budgets,
                    streaming=streaming,
                    client_streaming=client_streaming,
                ),
                handler.request_deserializer,
                handler.response_serializer,
            )
    return None


def _guard(
    inner: Any,
    method: str,
    access: Access,
    gate: Gate,
    budgets: CallBudgets,
    *,
    streaming: bool,
    client_streaming: bool,
) -> Any:
    """Authorise, take a budget slot, then run `inner`, mapping SentinelError to a rich
    status. Behaviours are async generators (streams we write) or coroutines (unary ones,
    and streams that call context.write, like grpc's health Watch); the guard keeps the
    shape grpc dispatches on. A streaming call is registered in `gate.calls` while it
    runs, so that a revocation of its certificate ends it. A call streaming either way
    spends the identity's stream budget, any other its unary budget."""
    stream = streaming or client_streaming
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            requests = request if client_streaming else None
            identity, serial = await _authorize(context, method, access, gate, requests)
            async with (
                _budgeted(context, budgets, identity, method, stream=stream, requests=requests),
                _mapped_errors(context, gate, identity, serial, streaming=True),
            ):
                async for response in inner(request, context):
                    yield response

        return generator

    async def coroutine(request: Any, context: grpc.aio.ServicerContext) -> Any:
        requests = request if client_streaming else None
        identity, serial = await _authorize(context, method, access, gate, requests)
        async with _budgeted(context, budgets, identity, method, stream=stream, requests=requests):
            if not streaming and gate.audit is not None and gate.audit.audits(method):
                return await gate.audit.call(inner, request, context, method, str(identity))
            async with _mapped_errors(context, gate, identity, serial, streaming=streaming):
                return await inner(request, context)

    return coroutine


@contextlib.asynccontextmanager
async def _budgeted(
    context: grpc.aio.ServicerContext,
    budgets: CallBudgets,
    identity: Identity,
    method: str,
    *,
    stream: bool,
    requests: AsyncIterator[Any] | None,
) -> AsyncIterator[None]:
    """Hold a slot of `identity`'s budgets while the call runs; refuse the call
    (RESOURCE_EXHAUSTED, with a retry hint) when a budget is spent."""
    try:
        slot = budgets.take(identity, stream=stream)
    except ResourceExhausted as exc:
        # Counted (sentinel_hub_rpc_refused_total); a line each would let a flood fill logs.
        log.debug("refused %s: %s", method, exc)
        if requests is not None:
            await _take_first_message(requests)
        await abort_with_error(context, exc)
    try:
        yield
    finally:
        budgets.give_back(slot)


@contextlib.asynccontextmanager
async def _mapped_errors(
    context: grpc.aio.ServicerContext,
    gate: Gate,
    identity: Identity,
    serial: str,
    *,
    streaming: bool,
) -> AsyncIterator[None]:
    """A SentinelError becomes its rich status. A streaming call is registered in
    `gate.calls` while it runs; one that a revocation ended answers CERT_REVOKED."""
    registered = gate.calls.opened(serial, identity) if streaming else contextlib.nullcontext()
    with registered as task:
        try:
            yield
        except SentinelError as exc:
            await abort_with_error(context, exc)
        except asyncio.CancelledError:
            if not gate.calls.was_ended(task):
                raise
            await _end_revoked(context, identity)
