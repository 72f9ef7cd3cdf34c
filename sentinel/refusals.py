"""Why a command was refused or did not complete: the stable reason codes.

These strings are part of the API (results, CloudEvents, metrics labels): never
rename one. Refusals happen before anything changes; `EXECUTION_FAILED` and
`INTERRUPTED` describe a command whose executor ran.
"""

from __future__ import annotations

import enum
from typing import Any

from sentinel.errors import SentinelError


class Reason(enum.StrEnum):
    # Refusals, in the order of the agent's pipeline.
    MALFORMED = "MALFORMED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    WRONG_AUDIENCE = "WRONG_AUDIENCE"
    REPLAYED = "REPLAYED"
    UNKNOWN_ACTION = "UNKNOWN_ACTION"
    BAD_TARGET = "BAD_TARGET"
    POLICY_DENIED = "POLICY_DENIED"
    # The agent's audit journal could not record the intent: nothing runs unrecorded.
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
    # Outcomes of an executor that ran.
    EXECUTION_FAILED = "EXECUTION_FAILED"
    INTERRUPTED = "INTERRUPTED"


REFUSALS = tuple(r for r in Reason if r not in (Reason.EXECUTION_FAILED, Reason.INTERRUPTED))


class CommandRefused(SentinelError):
    """A command that must not run. Nothing has changed when this is raised."""

    def __init__(self, reason: Reason, message: str, **details: Any) -> None:
        super().__init__(message, reason=reason.value, **details)
        self.code = reason


class ExecutionFailed(SentinelError):
    """The executor ran and could not do what was asked; what it changed is in the message."""

    reason = Reason.EXECUTION_FAILED.value
