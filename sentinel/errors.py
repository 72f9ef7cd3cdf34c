"""The one error tree of the project.

    SentinelError                 reason: stable, machine-readable code
    ├── InvalidArgument           bad input from a caller (maps to INVALID_ARGUMENT)
    │   └── InvalidNodeId
    ├── NotFound                  (NOT_FOUND)
    ├── PermissionDenied          identity or role does not allow it (PERMISSION_DENIED)
    ├── FailedPrecondition        state forbids it (FAILED_PRECONDITION)
    ├── ConfigError               local configuration or files are unusable
    ├── ResourceExhausted         a budget is spent; retry_after_s says when to try
    │                             again (RESOURCE_EXHAUSTED, with a RetryInfo)
    └── Unavailable               a peer cannot be reached right now (UNAVAILABLE)

The hub maps these to gRPC statuses in one place (`hub.errors`); the CLI prints
them as one line. `reason` strings are part of the API: never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SentinelError(Exception):
    """Base of every expected error. `reason` is stable; `details` is structured context."""

    reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.details: dict[str, str] = {k: str(v) for k, v in details.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class InvalidArgument(SentinelError):
    reason = "INVALID_ARGUMENT"


class InvalidNodeId(InvalidArgument):
    reason = "INVALID_NODE_ID"


class NotFound(SentinelError):
    reason = "NOT_FOUND"


class PermissionDenied(SentinelError):
    reason = "PERMISSION_DENIED"


class FailedPrecondition(SentinelError):
    reason = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: tuple[Violation, ...] = (),
        **details: Any,
    ) -> None:
        super().__init__(message, reason=reason, **details)
        self.violations = violations


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken precondition (google.rpc.PreconditionFailure.Violation), e.g. a policy
    rule: `kind` the rule kind, `subject` the rule and node, `description` in plain words."""

    kind: str
    subject: str
    description: str


class ConfigError(SentinelError):
    reason = "CONFIG_ERROR"


class ResourceExhausted(SentinelError):
    """A budget is spent: nothing was done, and the same call may succeed once the
    budget has room again, which `retry_after_s` estimates."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self, message: str, *, retry_after_s: float, reason: str | None = None, **details: Any
    ) -> None:
        super().__init__(message, reason=reason, **details)
        self.retry_after_s = retry_after_s


class Unavailable(SentinelError):
    reason = "UNAVAILABLE"


__all__ = [
    "ConfigError",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidNodeId",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "SentinelError",
    "Unavailable",
    "Violation",
]
