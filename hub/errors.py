"""The one seam where expected errors become gRPC statuses.

Each status carries a `google.rpc.Status` with an `ErrorInfo` whose `reason` is the
stable `SentinelError.reason`, so clients branch on the cause, not on message text. A
refusal for a spent budget (`ResourceExhausted`) also carries a `RetryInfo`: when trying
again may succeed.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sentinel import errors

DOMAIN = "sentinel.io"

_CODES: tuple[tuple[type[errors.SentinelError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_code_for(exc: errors.SentinelError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def rich_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: dict[str, str] | None = None,
    *,
    violations: tuple[errors.Violation, ...] = (),
    retry_after_s: float | None = None,
) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {})
    details = [_packed(info)]
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(retry_after_s * 1e9))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    if violations:
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=v.kind, subject=v.subject, description=v.description
                )
                for v in violations
            ]
        )
        details.append(_packed(failure))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    return rpc_status.to_status(status)


def _packed(message: Message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


async def abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str, reason: str
) -> NoReturn:
    """Abort the RPC with a rich status. Never returns (grpc raises)."""
    status = rich_status(code, message, reason)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")


async def abort_with_error(
    context: grpc.aio.ServicerContext, exc: errors.SentinelError
) -> NoReturn:
    violations = exc.violations if isinstance(exc, errors.FailedPrecondition) else ()
    retry_after_s = exc.retry_after_s if isinstance(exc, errors.ResourceExhausted) else None
    status = rich_status(
        status_code_for(exc),
        exc.message,
        exc.reason,
        exc.details,
        violations=violations,
        retry_after_s=retry_after_s,
    )
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")
