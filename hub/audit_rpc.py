"""One audit record per state-changing RPC, written by the authorisation interceptor.

Every method in `hub.auth.METHOD_RULES` is either in `AUDITED_METHODS` (it changes
state: issuing or approving a command, a policy, keys, enrollment, certificates,
rollouts) or in `READ_ONLY_METHODS`; a test holds the two to the rule table, so a new
RPC must be classified before it can ship.

An audited call (all of them are unary) is refused up front with UNAVAILABLE
(reason AUDIT_UNAVAILABLE) while the audit log cannot be written; otherwise the
handler runs and one `rpc` record names the caller (the verified certificate's
identity), the method, the status code and the reason — refusals by the role check
included. If that record cannot be written after the handler succeeded, the caller
gets UNAVAILABLE/AUDIT_UNAVAILABLE instead of OK: nobody is told "done" about an
unrecorded change. (Actuation writes its own intent record before it acts; see
`hub.command_issuer`.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from hub.audit_log import AuditLog
from hub.errors import abort_with_error, status_code_for
from sentinel.errors import SentinelError

log = logging.getLogger(__name__)

_V1 = "/sentinel.v1."
AUDITED_METHODS = frozenset(
    {
        f"{_V1}AgentService/RenewCertificate",
        f"{_V1}CommandService/IssueCommand",
        f"{_V1}CommandService/ApproveCommand",
        f"{_V1}KeyService/RotateCommandKey",
        f"{_V1}KeyService/RetireKey",
        f"{_V1}PolicyService/PutPolicy",
        f"{_V1}RolloutService/CreateRollout",
        f"{_V1}RolloutService/PauseRollout",
        f"{_V1}RolloutService/ResumeRollout",
        f"{_V1}RolloutService/PromoteRollout",
        f"{_V1}RolloutService/AbortRollout",
        f"{_V1}EnrollmentService/Enroll",
        f"{_V1}EnrollmentService/CreateEnrollmentToken",
        f"{_V1}EnrollmentService/ApproveEnrollment",
        f"{_V1}EnrollmentService/RevokeCertificate",
    }
)
READ_ONLY_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        # The telemetry stream: its effects are the fleet view, not decisions.
        f"{_V1}AgentService/Connect",
        f"{_V1}FleetService/ListNodes",
        f"{_V1}FleetService/GetNode",
        f"{_V1}FleetService/WatchTelemetry",
        f"{_V1}FleetService/RecommendPlacement",
        f"{_V1}CommandService/GetCommand",
        f"{_V1}CommandService/ListCommands",
        f"{_V1}CommandService/WatchCommand",
        f"{_V1}KeyService/GetKeyset",
        f"{_V1}PolicyService/GetPolicy",
        f"{_V1}PolicyService/ListPolicyVersions",
        f"{_V1}PolicyService/EvaluatePolicy",
        f"{_V1}RolloutService/GetRollout",
        f"{_V1}RolloutService/ListRollouts",
        f"{_V1}RolloutService/WatchRollout",
        f"{_V1}EnrollmentService/ListEnrollments",
        f"{_V1}AuditService/ListAuditRecords",
        f"{_V1}AuditService/ExportAudit",
    }
)
UNAUTHENTICATED = "unauthenticated"


class RpcAudit:
    def __init__(self, log_: AuditLog) -> None:
        self._log = log_

    def audits(self, method: str) -> bool:
        return method in AUDITED_METHODS

    async def call(
        self,
        inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
        request: Any,
        context: grpc.aio.ServicerContext,
        method: str,
        actor: str,
    ) -> Any:
        """Run an authorised handler of an audited method and record how it ended."""
        try:
            self._log.check_ready()
            response = await inner(request, context)
        except SentinelError as exc:
            await self.record(method, actor, status_code_for(exc), exc.reason)
            await abort_with_error(context, exc)
        except asyncio.CancelledError:
            raise
        except Exception:  # the handler aborted the call itself (or a bug)
            await self.record(method, actor, _code_of(context), _reason_of(context))
            raise
        try:
            await self.record(method, actor, grpc.StatusCode.OK, "", strict=True)
        except SentinelError as exc:
            await abort_with_error(context, exc)
        return response

    async def record(
        self, method: str, actor: str, code: grpc.StatusCode, reason: str, *, strict: bool = False
    ) -> None:
        """Append the `rpc` record; raise Unavailable only if `strict`, else log."""
        try:
            await self._log.append(
                "rpc",
                actor=actor,
                target=method.removeprefix("/"),
                outcome=code.name,
                reason=reason,
                details={"method": method},
            )
        except SentinelError as exc:
            log.error("audit record of %s by %s (%s) not written: %s", method, actor, code, exc)
            if strict:
                raise


def _code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return candidate
    return grpc.StatusCode.UNKNOWN


def _reason_of(context: grpc.aio.ServicerContext) -> str:
    """The ErrorInfo reason of the rich status a handler aborted with, or ""."""
    for key, value in context.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return str(info.reason)
    return ""
