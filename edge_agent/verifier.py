"""The first half of the agent's command pipeline: from raw bytes to a payload it trusts.

Order (each step only sees what the previous one vouched for):
size cap → unwrap → signatures against the trusted keyset → decode → not expired and
already valid, by the agent clock → addressed to this node. Each failure raises
`CommandRefused` with its reason; once the signature verified, the refusal carries
the command id (in `details["command_id"]`), which can then be trusted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.message import DecodeError

from edge_agent.trust import AgentClock, TrustStore
from sentinel.durations import from_timestamp
from sentinel.envelope import MAX_ENVELOPE_BYTES, unwrap, verify
from sentinel.errors import InvalidArgument
from sentinel.keyset import COMMAND
from sentinel.refusals import CommandRefused, Reason
from sentinel.v1 import command_pb2

DEFAULT_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class VerifiedCommand:
    payload: command_pb2.CommandPayload
    issued_at: datetime
    not_after: datetime


class Verifier:
    def __init__(
        self,
        node_id: str,
        trust: TrustStore,
        clock: AgentClock,
        *,
        skew: timedelta = DEFAULT_SKEW,
        max_bytes: int = MAX_ENVELOPE_BYTES,
    ) -> None:
        self._node_id = node_id
        self._trust = trust
        self._clock = clock
        self._skew = skew
        self._max_bytes = max_bytes

    def verify(self, data: bytes) -> VerifiedCommand:
        envelope = unwrap(data, max_bytes=self._max_bytes)
        now = self._clock.now()
        payload_bytes = verify(envelope, self._trust.keys(now), COMMAND)
        payload = _decode(payload_bytes)
        command_id = payload.command_id
        try:
            issued_at = from_timestamp(payload.issued_at)
            not_after = from_timestamp(payload.not_after)
        except InvalidArgument as exc:
            raise CommandRefused(Reason.MALFORMED, exc.message, command_id=command_id) from exc
        if not_after <= now:
            raise CommandRefused(
                Reason.EXPIRED,
                f"expired at {not_after.isoformat()} (agent clock {now.isoformat()})",
                command_id=command_id,
            )
        if issued_at > now + self._skew:
            raise CommandRefused(
                Reason.NOT_YET_VALID,
                f"issued at {issued_at.isoformat()}, beyond the allowed skew of the agent clock "
                f"{now.isoformat()}",
                command_id=command_id,
            )
        self._clock.observe(issued_at)
        if payload.audience != self._node_id:
            raise CommandRefused(
                Reason.WRONG_AUDIENCE,
                f"addressed to {payload.audience!r}, not to this node",
                command_id=command_id,
            )
        return VerifiedCommand(payload, issued_at, not_after)


def _decode(data: bytes) -> command_pb2.CommandPayload:
    payload = command_pb2.CommandPayload()
    try:
        payload.ParseFromString(data)
    except DecodeError as exc:
        raise CommandRefused(Reason.MALFORMED, f"payload does not decode: {exc}") from exc
    try:
        uuid.UUID(payload.command_id)
    except ValueError as exc:
        raise CommandRefused(Reason.MALFORMED, "payload has no valid command id") from exc
    if not payload.HasField("issued_at") or not payload.HasField("not_after"):
        raise CommandRefused(
            Reason.MALFORMED, "payload lacks issued_at or not_after", command_id=payload.command_id
        )
    return payload
