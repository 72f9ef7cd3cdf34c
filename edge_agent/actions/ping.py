"""`agent.ping`: answer and change nothing, to prove the command path end to end.

It has no checks, so it runs on any node that allows it; plan and execute return
the same empty outcome with the message "pong".
"""

from __future__ import annotations

from edge_agent.actions.base import ActionContext, Outcome, Params
from sentinel.actions import CATALOGUE, ActionSpec

PONG = Outcome(message="pong")


class Ping:
    spec: ActionSpec = CATALOGUE["agent.ping"]

    def check(self, params: Params, ctx: ActionContext) -> None:
        return None

    def plan(self, params: Params, ctx: ActionContext) -> Outcome:
        return PONG

    def execute(self, params: Params, ctx: ActionContext) -> Outcome:
        return PONG
