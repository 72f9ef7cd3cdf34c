"""Per-identity call budgets, so that no single identity can starve the fleet.

gRPC's own `maximum_concurrent_rpcs` refuses before anyone knows who is calling: one
viewer holding thousands of WatchTelemetry streams would lock every agent's Connect out.
These budgets are taken right after authorisation (`hub.auth`), keyed by the verified
identity (`spiffe://<domain>/user/alice`, `spiffe://<domain>/node/gpu-1`):

- a node holds at most `node_streams_per_identity` streams, a user at most
  `user_streams_per_identity`;
- any identity has at most `unary_per_identity` unary calls in flight;
- all users together hold at most `user_calls_total` calls, streams and unary, so what is
  left under the global guard is the nodes'.

A call over a budget is refused with `ResourceExhausted` (RESOURCE_EXHAUSTED, reason
`STREAM_BUDGET_EXHAUSTED`, `RPC_BUDGET_EXHAUSTED` or `USER_SHARE_EXHAUSTED`, and a retry
hint) before its handler runs, and counted through `on_refused`.

Invariants: a slot is taken with no await between the check and the take (one event loop,
so no two calls can both see the last free slot), and given back exactly once, however the
call ends. An identity holding nothing is forgotten, so the bookkeeping grows with the
calls in progress, not with every identity ever seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hub.settings import ServerLimits
from sentinel.errors import ResourceExhausted
from sentinel.identity import Identity, Kind

STREAM_BUDGET_EXHAUSTED = "STREAM_BUDGET_EXHAUSTED"
RPC_BUDGET_EXHAUSTED = "RPC_BUDGET_EXHAUSTED"
USER_SHARE_EXHAUSTED = "USER_SHARE_EXHAUSTED"
REASONS = (STREAM_BUDGET_EXHAUSTED, RPC_BUDGET_EXHAUSTED, USER_SHARE_EXHAUSTED)


@dataclass(frozen=True, slots=True)
class Slot:
    """One call's place in the budgets; give it back with `CallBudgets.give_back`."""

    holder: str
    stream: bool
    user: bool


def _ignore(reason: str) -> None:
    return None


class CallBudgets:
    """The calls each identity holds, checked against `limits`."""

    def __init__(self, limits: ServerLimits, on_refused: Callable[[str], None] = _ignore) -> None:
        self._limits = limits
        self._on_refused = on_refused
        self._streams: dict[str, int] = {}
        self._unary: dict[str, int] = {}
        self.user_calls = 0

    def held_by(self, identity: Identity) -> tuple[int, int]:
        """(streams, unary calls) `identity` holds now."""
        holder = str(identity)
        return self._streams.get(holder, 0), self._unary.get(holder, 0)

    def holders(self) -> int:
        """Identities holding at least one call."""
        return len(self._streams.keys() | self._unary.keys())

    def take(self, identity: Identity, *, stream: bool) -> Slot:
        """A slot for one call of `identity`; raise ResourceExhausted if a budget is spent."""
        holder = str(identity)
        user = identity.kind is Kind.USER
        held = self._streams if stream else self._unary
        if stream:
            cap = (
                self._limits.user_streams_per_identity
                if user
                else self._limits.node_streams_per_identity
            )
            what, reason = "streams", STREAM_BUDGET_EXHAUSTED
        else:
            cap, what, reason = self._limits.unary_per_identity, "calls", RPC_BUDGET_EXHAUSTED
        if held.get(holder, 0) >= cap:
            self._refuse(reason, f"{holder} already holds {cap} {what}, its budget", holder)
        if user and self.user_calls >= self._limits.user_calls_total:
            self._refuse(
                USER_SHARE_EXHAUSTED,
                f"users together hold {self.user_calls} calls, their share of the hub",
                holder,
            )
        held[holder] = held.get(holder, 0) + 1
        self.user_calls += user
        return Slot(holder, stream, user)

    def give_back(self, slot: Slot) -> None:
        held = self._streams if slot.stream else self._unary
        left = held[slot.holder] - 1
        if left:
            held[slot.holder] = left
        else:
            del held[slot.holder]
        self.user_calls -= slot.user

    def _refuse(self, reason: str, why: str, holder: str) -> None:
        self._on_refused(reason)
        retry_after_s = self._limits.budget_retry_after_s
        raise ResourceExhausted(
            f"{why}; retry in {retry_after_s:g} s (a slot frees when a call ends)",
            reason=reason,
            retry_after_s=retry_after_s,
            identity=holder,
        )


__all__ = [
    "REASONS",
    "RPC_BUDGET_EXHAUSTED",
    "STREAM_BUDGET_EXHAUSTED",
    "USER_SHARE_EXHAUSTED",
    "CallBudgets",
    "Slot",
]
