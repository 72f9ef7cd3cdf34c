"""Helpers for command tests: agents that may restart a unit through a recording
`systemctl`, envelopes signed (or forged) outside the hub, and a log of the fleet's
command events as any NATS subscriber sees them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

import certs
from edge_agent.actions.base import ActionSettings
from edge_agent.app import Agent
from edge_agent.settings import AgentSettings, CommandSettings, SamplingSettings
from hub.app import Hub
from sentinel import subjects
from sentinel.durations import to_timestamp
from sentinel.envelope import SigningKey, seal
from sentinel.keyset import COMMAND
from sentinel.v1 import command_pb2
from tests.conftest import WAIT_S, Pki, eventually, nats_admin, within
from tests.test_observe_path import agent_settings

UNIT = "trainer.service"
# Lets every action run: these tests are about the command path, not about policy.
OPEN_POLICY = b"""\
version: 2
expires_at: 2100-01-01T00:00:00Z
allow:
  actions: ["*"]
  shadow: true
safe_actions: [agent.ping]
rules: []
"""
PAYLOAD_TYPE = "sentinel.v1.CommandPayload"


def recording_systemctl(directory: Path, *, then: str = "") -> tuple[Path, Path]:
    """A stand-in for systemctl that appends its arguments to a file, then runs `then`."""
    record = directory / "systemctl.calls"
    script = directory / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\n{then}\n')
    script.chmod(0o755)
    return script, record


def calls(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def command_settings(systemctl: Path, *allowed: str) -> CommandSettings:
    return CommandSettings(
        actions=ActionSettings(
            allowed_actions=frozenset(allowed or ("agent.ping", "node.systemd.restart")),
            systemctl_path=str(systemctl),
            systemd_units=frozenset({UNIT}),
        )
    )


def quiet_agent_settings(
    pki: Pki, hub: Hub, data_dir: Path, node_id: str, systemctl: Path, **labels: str
) -> AgentSettings:
    """An agent that samples rarely (host only): the command path is what is under test."""
    settings = agent_settings(pki, hub, data_dir, node_id, **labels)
    return replace(
        settings,
        sampling=SamplingSettings(
            batch_interval=timedelta(seconds=5), sample_interval=timedelta(seconds=5)
        ),
        commands=command_settings(systemctl),
    )


async def open_policy(hub: Hub) -> None:
    """Put OPEN_POLICY on the hub unless a policy of that version is there already."""
    if hub.policies.current.bundle.version < 2:
        await hub.policies.put(OPEN_POLICY, "test")


async def started(settings: AgentSettings, hub: Hub) -> Agent:
    """An agent that receives commands under OPEN_POLICY (unless the test put another)."""
    await open_policy(hub)
    agent = await Agent.start(settings)
    await within(agent.commands.consuming.wait())
    version = hub.policies.current.bundle.version
    await eventually(lambda: agent.commands_parts.policies.version == version)
    return agent


def refused(agent: Agent, reason: str) -> float:
    value = agent.metrics.registry.get_sample_value(
        "sentinel_agent_commands_refused_total", {"reason": reason}
    )
    return value or 0.0


def payload(
    node_id: str = "node-a",
    action: str = "node.systemd.restart",
    *,
    issued_at: datetime | None = None,
    ttl: timedelta = timedelta(minutes=1),
    command_id: str | None = None,
    **extra: Any,
) -> command_pb2.CommandPayload:
    issued = issued_at or datetime.now(UTC)
    message = command_pb2.CommandPayload(
        command_id=command_id or str(uuid.uuid4()),
        issuer="test",
        issued_at=to_timestamp(issued),
        not_after=to_timestamp(issued + ttl),
        audience=node_id,
        action=action,
        mode=command_pb2.COMMAND_MODE_EXECUTE,
        **extra,
    )
    if action == "node.systemd.restart" and "parameters" not in extra:
        message.parameters["unit"].string_value = UNIT
    return message


def command_signer(pki: Pki) -> SigningKey:
    return certs.load_signer(pki.layout.command_key, COMMAND)


def sign(message: command_pb2.CommandPayload, signer: SigningKey) -> bytes:
    return seal(message.SerializeToString(), [signer], PAYLOAD_TYPE)


async def publish(nc: NatsClient, node_id: str, data: bytes, msg_id: str | None = None) -> int:
    """Publish an envelope on a node's command subject; returns its stream sequence."""
    ack = await nc.jetstream().publish(
        subjects.command_subject(node_id),
        data,
        stream=subjects.COMMANDS_STREAM,
        headers={"Nats-Msg-Id": msg_id or f"{uuid.uuid4()}/{node_id}"},
    )
    return int(ack.seq)


@dataclass
class EventLog:
    """Command CloudEvents, as a stock NATS subscriber receives them."""

    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, message: Msg) -> None:
        self.events.append(json.loads(message.data))
        self.changed.set()

    def matching(self, kind: str, **data: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["type"] == f"io.sentinel.command.{kind}"
            and all(e["data"].get(k) == v for k, v in data.items())
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def one(self, kind: str, **data: Any) -> dict[str, Any]:
        """Wait for an event of `kind` whose data has `data`; exactly one must exist."""
        await self.wait_for(lambda: bool(self.matching(kind, **data)))
        found = self.matching(kind, **data)
        assert len(found) == 1, found
        return found[0]


async def event_log(hub: Hub) -> tuple[NatsClient, EventLog]:
    """A `nats-admin` client of the hub's NATS (to publish as the tests please), and the
    command events it sees."""
    nc = await nats_admin(hub)
    log = EventLog()
    await nc.subscribe("sentinel.events.command.>", cb=log.on_message)
    await nc.flush()
    return nc, log
