"""The agent's audit journal: torn tails cut, damage set aside, an intent before every
execution (and none without one), shipping into the hub's chain exactly once across an
agent restart, and records forged for another node refused by the hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.audit_journal import JOURNAL_FILE, SHIPPED_FILE, AuditJournal
from hub.app import Hub
from sentinel import audit, subjects
from sentinel.tls import secure_aio_channel
from sentinel.v1 import command_pb2
from sentinel.v1 import command_pb2_grpc as command_grpc
from tests.command_helpers import calls, quiet_agent_settings, recording_systemctl, started
from tests.conftest import Pki, consumer_settled, nats_admin
from tests.test_audit_log import records_of, until_recorded
from tests.test_commands import finished, issue, restart

NODE_A = "spiffe://sentinel.local/node/node-a"


def journal_lines(data_dir: Path) -> list[bytes]:
    return audit.split_lines((data_dir / JOURNAL_FILE).read_bytes())


def test_a_torn_last_record_is_cut_and_the_journal_continues(tmp_path: Path) -> None:
    journal = AuditJournal.open(tmp_path, NODE_A)
    for n in range(3):
        journal.append("command.intent", target=f"c-{n}", details={"n": n})
    journal.close()
    whole = (tmp_path / JOURNAL_FILE).read_bytes()
    (tmp_path / JOURNAL_FILE).write_bytes(whole + b'{"action":"command.executed","act')

    reopened = AuditJournal.open(tmp_path, NODE_A)
    assert reopened.torn_bytes == len(b'{"action":"command.executed","act')
    assert (tmp_path / JOURNAL_FILE).read_bytes() == whole
    record = reopened.append("command.executed", target="c-2")
    reopened.close()
    assert record.seq == 5 and record.details["journal_id"] == reopened.journal_id
    lines = journal_lines(tmp_path)
    assert audit.verify_chain(lines, require_seal=False).ok
    assert audit.parse_record(lines[0]).action == "journal.opened"


def test_a_damaged_journal_is_set_aside_and_a_new_one_names_it(tmp_path: Path) -> None:
    journal = AuditJournal.open(tmp_path, NODE_A)
    journal.append("command.intent", target="c-1")
    journal.append("command.executed", target="c-1")
    old_id = journal.journal_id
    journal.close()
    lines = journal_lines(tmp_path)
    lines[1] = lines[1].replace(b"c-1", b"c-9")  # an edit in the middle
    (tmp_path / JOURNAL_FILE).write_bytes(b"\n".join(lines) + b"\n")

    fresh = AuditJournal.open(tmp_path, NODE_A)
    fresh.close()
    assert fresh.journal_id != old_id
    (opened,) = [audit.parse_record(line) for line in journal_lines(tmp_path)]
    assert opened.action == "journal.opened"
    assert opened.details["previous"] == f"{JOURNAL_FILE}.damaged-1"
    assert "hash mismatch" in opened.details["damage"]
    assert (tmp_path / f"{JOURNAL_FILE}.damaged-1").exists()


def test_the_shipped_mark_survives_a_reopen(tmp_path: Path) -> None:
    journal = AuditJournal.open(tmp_path, NODE_A)
    journal.append("command.intent")
    journal.append("command.executed")
    journal.mark_shipped(2)
    journal.close()
    reopened = AuditJournal.open(tmp_path, NODE_A)
    assert [seq for seq, _ in reopened.unshipped()] == [3]
    reopened.close()


@pytest.fixture
async def operator(hub: Hub, pki: Pki) -> AsyncIterator[command_grpc.CommandServiceStub]:
    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        yield command_grpc.CommandServiceStub(channel)


async def settled(hub: Hub) -> None:
    """The hub's agent-audit consumer has taken everything published so far."""
    nc = await nats_admin(hub)
    try:
        await consumer_settled(
            nc.jetstream(), subjects.AGENT_AUDIT_STREAM, subjects.AGENT_AUDIT_CONSUMER
        )
    finally:
        await nc.close()


async def test_journal_records_reach_the_hub_once_across_an_agent_restart(
    hub: Hub, pki: Pki, tmp_path: Path, operator: command_grpc.CommandServiceStub
) -> None:
    script, record = recording_systemctl(tmp_path)
    settings = quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script)
    agent = await started(settings, hub)
    try:
        first = await issue(operator, **restart())
        assert (await finished(operator, first.command_id)).nodes[0].state == (
            command_pb2.COMMAND_STATE_EXECUTED
        )
        shipped = await until_recorded(hub, "agent.", 3, prefix=True)
    finally:
        await agent.stop()
    assert [r.action for r in shipped] == [
        "agent.journal.opened",
        "agent.command.intent",
        "agent.command.executed",
    ]
    intent = shipped[1]
    assert (intent.actor, intent.target, intent.outcome) == (NODE_A, first.command_id, "begun")
    assert intent.details["local_seq"] == 2 and intent.policy_version == 2
    assert calls(record) == ["restart -- trainer.service"]

    # The agent forgets what it shipped: it sends its whole journal again after a restart.
    (settings.data_dir / SHIPPED_FILE).unlink()
    agent = await started(settings, hub)
    try:
        second = await issue(operator, **restart())
        await finished(operator, second.command_id)
        await until_recorded(hub, "agent.", 5, prefix=True)
        await settled(hub)
    finally:
        await agent.stop()
    # Past JetStream's dedup window (another message id), the hub's own mark drops a copy.
    nc = await nats_admin(hub)
    try:
        await nc.jetstream().publish(
            subjects.node_audit_subject("node-a"),
            journal_lines(settings.data_dir)[1],
            stream=subjects.AGENT_AUDIT_STREAM,
            headers={"Nats-Msg-Id": "a-later-copy"},
        )
    finally:
        await nc.close()
    await settled(hub)
    dropped = hub.audit.metrics.registry.get_sample_value(
        "sentinel_hub_audit_agent_records_dropped_total", {"reason": "DUPLICATE"}
    )
    assert dropped == 1.0
    local = [r.details["local_seq"] for r in await records_of(hub) if r.action.startswith("agent.")]
    assert local == [1, 2, 3, 4, 5]
    assert audit.verify_chain(journal_lines(settings.data_dir), require_seal=False).ok


async def test_no_action_runs_without_its_intent_record(
    hub: Hub, pki: Pki, tmp_path: Path, operator: command_grpc.CommandServiceStub
) -> None:
    script, record = recording_systemctl(tmp_path)
    agent = await started(quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script), hub)
    journal = agent.commands_parts.audit
    assert journal is not None

    def disk_full(*args: object, **kwargs: object) -> audit.AuditRecord:
        raise OSError(28, "No space left on device")

    journal.append = disk_full  # type: ignore[method-assign]
    try:
        command = await issue(operator, **restart())
        done = await finished(operator, command.command_id)
    finally:
        await agent.stop()
    assert (done.nodes[0].state, done.nodes[0].reason) == (
        command_pb2.COMMAND_STATE_REFUSED,
        "AUDIT_UNAVAILABLE",
    )
    assert calls(record) == []


async def test_a_record_forged_for_another_node_is_refused(hub: Hub) -> None:
    """node-b publishes (on its own subject) a well-formed record by node-a: dropped."""
    forged = audit.new_record(
        1,
        audit.ZERO_HASH,
        time=datetime.now(UTC),
        action="journal.opened",
        actor=NODE_A,
        details={"journal_id": "0123456789abcdef"},
    )
    nc = await nats_admin(hub)
    try:
        js = nc.jetstream()
        for data in (forged.line(), b"not a record"):
            await js.publish(
                subjects.node_audit_subject("node-b"),
                data,
                stream=subjects.AGENT_AUDIT_STREAM,
            )
    finally:
        await nc.close()
    await settled(hub)
    registry = hub.audit.metrics.registry
    name = "sentinel_hub_audit_agent_records_dropped_total"
    assert registry.get_sample_value(name, {"reason": "NODE_ID_MISMATCH"}) == 1.0
    assert registry.get_sample_value(name, {"reason": "MALFORMED"}) == 1.0
    assert not [r for r in await records_of(hub) if r.action.startswith("agent.")]
