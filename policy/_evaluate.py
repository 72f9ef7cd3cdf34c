"""Evaluation: a proposal through the bundle's pipeline of checks, to one `Decision`.

The pipeline, in order (each stage a callable giving a `RuleResult` or nothing):
  1. `allow` — deny by default: an execute-mode action must match `allow.actions`;
     a shadow run needs `allow.shadow` (or the action in `allow.actions`);
  2. `safe-mode` — only when the caller says the bundle has expired: only
     `safe_actions` may execute;
  3. the bundle's rules, in bundle order, that apply to the proposal and whose scope
     the caller evaluates (an agent passes `scopes={Scope.NODE}`).
Shadow runs stop after stage 1: they change nothing and are not recorded, so no rule
limits them.

Invariants: every stage runs (a deny does not hide later rules from the audit trail);
the verdict is `combine()` of the stages' verdicts; nothing reads a clock, the
environment or randomness, so equal inputs give equal decisions.
"""

from __future__ import annotations

from collections.abc import Set
from datetime import UTC, datetime

from policy._bundle import Bundle
from policy._model import (
    BOTH_SCOPES,
    Decision,
    FleetContext,
    History,
    Inputs,
    Proposal,
    RuleResult,
    Scope,
    Verdict,
    combine,
    require_aware,
)
from policy._rate_limit import RateLimit
from sentinel.errors import InvalidArgument

ALLOW_ID, SAFE_MODE_ID = "allow", "safe-mode"
_NO_FLEET = FleetContext()
_FIRST = datetime(3, 1, 1, tzinfo=UTC)  # margins for windows and 366-day limits
_LAST = datetime(9997, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def evaluate(
    bundle: Bundle,
    proposal: Proposal,
    now: datetime,
    *,
    history: History,
    fleet: FleetContext | None = None,
    scopes: Set[Scope] = BOTH_SCOPES,
    safe_mode: bool = False,
) -> Decision:
    """Decide whether `proposal` may run at `now` (aware) under `bundle`.

    `history` answers the rate limits; `fleet=None` means the caller knows nothing of the
    fleet, so fleet rules that need an input ask for a human (NO_INPUT). The caller, not
    this function, decides `safe_mode` (e.g. `now >= bundle.expires_at` on an agent)."""
    _check_now(now)
    results = [_allow_result(bundle, proposal)]
    if not proposal.shadow:
        if safe_mode:
            results.append(_safe_mode_result(bundle, proposal))
        inputs = Inputs(proposal, now, history, fleet or _NO_FLEET)
        for rule in bundle.rules_for(proposal.action):
            if rule.scope in scopes:
                result = rule.judge(inputs)
                if result is not None:
                    results.append(result)
    verdict = combine(result.verdict for result in results)
    return Decision(verdict, tuple(results), bundle.version)


def rate_keys(bundle: Bundle, proposal: Proposal, *, scopes: Set[Scope] = BOTH_SCOPES) -> list[str]:
    """The keys a permitted execution of `proposal` is recorded under, one per applicable
    rate-limit rule in `scopes`, in bundle order; none for a shadow run."""
    if proposal.shadow:
        return []
    return [
        rule.spec.key(proposal)
        for rule in bundle.rules_for(proposal.action)
        if isinstance(rule.spec, RateLimit) and rule.scope in scopes and rule.applies(proposal)
    ]


def _check_now(now: datetime) -> None:
    require_aware(now, "now")
    if not _FIRST <= now <= _LAST:
        raise InvalidArgument(
            f"now {now.isoformat()} is outside the years 0003..9997 that policies cover",
            reason="INVALID_TIME",
        )


def _allow_result(bundle: Bundle, proposal: Proposal) -> RuleResult:
    action = proposal.action
    details = {"action": action, "mode": "shadow" if proposal.shadow else "execute"}
    pattern = bundle.allow_pattern(action)
    if pattern is None and proposal.shadow and bundle.allow_shadow:
        pattern = "allow.shadow"
    if pattern is None:
        details["allowed"] = ", ".join(sorted(bundle.allow_actions))
        return _builtin(ALLOW_ID, "allow", Verdict.DENY, "NOT_ALLOWED", details)
    return _builtin(ALLOW_ID, "allow", Verdict.ALLOW, "ALLOWED", details | {"pattern": pattern})


def _safe_mode_result(bundle: Bundle, proposal: Proposal) -> RuleResult:
    details = {"action": proposal.action}
    pattern = bundle.safe_pattern(proposal.action)
    if pattern is None:
        details["safe_actions"] = ", ".join(sorted(bundle.safe_actions))
        return _builtin(SAFE_MODE_ID, "safe_mode", Verdict.DENY, "SAFE_MODE", details)
    details["pattern"] = pattern
    return _builtin(SAFE_MODE_ID, "safe_mode", Verdict.ALLOW, "SAFE_ACTION", details)


def _builtin(
    rule_id: str, kind: str, verdict: Verdict, reason: str, details: dict[str, str]
) -> RuleResult:
    return RuleResult(rule_id, kind, Scope.NODE, verdict, reason, details)
