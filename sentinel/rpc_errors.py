"""Client-side reading of the hub's rich error statuses."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sentinel.errors import Violation


def reason_of(error: grpc.RpcError) -> str | None:
    """The ErrorInfo reason a failed call carries, or None."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return None


def describe(error: grpc.RpcError) -> str:
    """One line: `CODE (REASON): details`."""
    code = error.code().name if hasattr(error, "code") else "UNKNOWN"
    details = error.details() if hasattr(error, "details") else str(error)
    reason = reason_of(error)
    label = f"{code} ({reason})" if reason and reason != code else code
    return f"{label}: {details}"


def violations_of(error: grpc.RpcError) -> list[Violation]:
    """The violations a `google.rpc.PreconditionFailure` detail lists (e.g. every policy
    rule that denied a command), in order; empty when the call carries none."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        return []
    if status is None:
        return []
    found: list[Violation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            found.extend(Violation(v.type, v.subject, v.description) for v in failure.violations)
    return found
