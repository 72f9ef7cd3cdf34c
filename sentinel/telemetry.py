"""Limits of the telemetry protocol that the agent keeps and the hub enforces.

Invariant: each number here is part of the API (proto/sentinel/v1/agent.proto names it);
the agent never sends past it, and the hub refuses what does.
"""

from __future__ import annotations

# How many older boots a hello may list in `AgentHello.backlog_boot_ids`. An agent with
# more lists the oldest; the next hello, after those drained, lists the rest.
MAX_BACKLOG_BOOTS = 8

__all__ = ["MAX_BACKLOG_BOOTS"]
