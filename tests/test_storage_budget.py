"""Storage budgets against a real hub and real nats-servers: every stream and bucket is
bounded, a node fills only its own share (published with its own certificate), commands
for one node are never evicted by another's, and the revocations' share is reserved, so
a revocation is written while everything else is full."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import APIError, ServiceUnavailableError

from hub.app import Hub
from hub.audit_agents import agent_audit_stream
from hub.embedded_nats import EmbeddedNats
from hub.revocation import Revocations
from hub.state import (
    HubState,
    commands_stream,
    ensure_stream,
    events_stream,
    results_stream,
)
from hub.storage_budget import Budget, StorageBudget
from sentinel import subjects
from sentinel.rpc_errors import reason_of
from sentinel.tls import TlsFiles
from sentinel.v1 import command_pb2, command_pb2_grpc
from tests.conftest import WAIT_S, Pki, nats_admin
from tests.test_nats_security import Violations, as_node
from tests.test_observe_path import open_stream

Channels = Callable[[TlsFiles], grpc.aio.Channel]
KIB = 1024
SHARE = 3  # messages per node subject in these tests


def small_budget(nodes: int = 2) -> StorageBudget:
    """The default budget's shape, every share a few KiB and SHARE messages per subject."""
    default = StorageBudget()
    shrunk = {}
    for item in fields(default):
        share = getattr(default, item.name)
        if isinstance(share, Budget):
            shrunk[item.name] = replace(
                share,
                bytes=min(share.bytes, 16 * KIB),
                max_msg_bytes=min(share.max_msg_bytes, 2 * KIB),
                max_msgs_per_subject=SHARE if share.max_msgs_per_subject > 0 else -1,
            )
    return replace(default, nodes=nodes, **shrunk)


SMALL = small_budget()


@pytest.fixture
async def admin(hub: Hub) -> AsyncIterator[NatsClient]:
    nc = await nats_admin(hub)
    yield nc
    await nc.close()


async def subject_counts(js: JetStreamContext, stream: str) -> dict[str, int]:
    info = await js.stream_info(stream, subjects_filter=">")
    return dict(info.state.subjects or {})


async def payloads(js: JetStreamContext, stream: str, subject: str) -> list[bytes]:
    info = await js.stream_info(stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            continue
        if message.subject == subject:
            found.append(message.data or b"")
    return found


async def test_every_stream_and_bucket_of_a_hub_has_a_budget_and_they_add_up(
    hub: Hub, admin: NatsClient
) -> None:
    js = admin.jetstream()
    budget = StorageBudget()
    reserved = budget.reserved()
    infos = await js.streams_info()
    assert sorted(info.config.name or "" for info in infos) == sorted(reserved)
    for info in infos:
        name = info.config.name or ""
        assert info.config.max_bytes == reserved[name], name
        assert info.config.max_msg_size is not None and info.config.max_msg_size > 0, name
    assert sum(reserved.values()) == budget.total_bytes()


async def test_a_node_flooding_its_results_or_journal_is_refused_and_no_one_else_is(
    hub: Hub, pki: Pki, admin: NatsClient
) -> None:
    js = admin.jetstream()
    await ensure_stream(js, results_stream(SMALL))
    await ensure_stream(js, agent_audit_stream(SMALL))
    violations = Violations()
    node_a, node_b = [await as_node(hub, pki, n, violations) for n in ("node-a", "node-b")]
    try:
        a, b = node_a.jetstream(timeout=WAIT_S), node_b.jetstream(timeout=WAIT_S)
        for stream, subject in (
            (subjects.RESULTS_STREAM, subjects.result_subject),
            (subjects.AGENT_AUDIT_STREAM, subjects.node_audit_subject),
        ):
            sent = [f"{stream} {index}".encode() for index in range(SHARE)]
            for data in sent:
                await a.publish(subject("node-a"), data, stream=stream)
            with pytest.raises(ServiceUnavailableError) as refused:
                await a.publish(subject("node-a"), b"one too many", stream=stream)
            assert refused.value.err_code == 10077
            assert refused.value.description == "maximum messages per subject exceeded"
            await b.publish(subject("node-b"), b"node-b still writes", stream=stream)
            counts = await subject_counts(js, stream)
            assert counts == {subject("node-a"): SHARE, subject("node-b"): 1}
            assert await payloads(js, stream, subject("node-a")) == sent  # nothing evicted
        assert violations.messages == []
    finally:
        await node_a.close()
        await node_b.close()


async def test_a_node_flooding_its_events_rolls_only_its_own_oldest_out(
    hub: Hub, pki: Pki, admin: NatsClient
) -> None:
    js = admin.jetstream()
    await ensure_stream(js, events_stream(SMALL))
    theirs = subjects.event_subject("policy", "safe_mode", "node-b")
    ours = subjects.event_subject("policy", "safe_mode", "node-a")
    violations = Violations()
    node_a, node_b = [await as_node(hub, pki, n, violations) for n in ("node-a", "node-b")]
    try:
        await node_b.jetstream().publish(theirs, b"node-b's event")
        flood = [f"flood {index}".encode() for index in range(3 * SHARE)]
        for data in flood:  # every one acknowledged: an event is never refused
            await node_a.jetstream().publish(ours, data)
        assert await payloads(js, subjects.EVENTS_STREAM, theirs) == [b"node-b's event"]
        assert await payloads(js, subjects.EVENTS_STREAM, ours) == flood[-SHARE:]
        assert violations.messages == []
    finally:
        await node_a.close()
        await node_b.close()


async def test_commands_for_a_node_are_never_evicted_by_a_flood_of_commands_for_another(
    hub: Hub, pki: Pki, admin: NatsClient, channel_to: Channels
) -> None:
    js = admin.jetstream()
    await ensure_stream(js, commands_stream(SMALL))
    calls = [(await open_stream(channel_to(pki.node(n)), n))[0] for n in ("node-a", "node-b")]
    stub = command_pb2_grpc.CommandServiceStub(channel_to(pki.user("operator")))

    async def ping(node_id: str) -> str:
        request = command_pb2.IssueCommandRequest(
            target=command_pb2.CommandTarget(node_id=node_id), action="agent.ping"
        )
        response = await stub.IssueCommand(request, timeout=WAIT_S)
        return str(response.command.command_id)

    try:
        for_a = [await ping("node-a") for _ in range(SHARE - 1)]
        for_b = [await ping("node-b") for _ in range(SHARE)]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ping("node-b")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(refused.value) == "NODE_QUEUE_FULL"
        assert "node-b's command queue is full" in (refused.value.details() or "")
        counts = await subject_counts(js, subjects.COMMANDS_STREAM)
        assert counts == {
            subjects.command_subject("node-a"): SHARE - 1,
            subjects.command_subject("node-b"): SHARE,
        }
        for_a.append(await ping("node-a"))  # node-a's share is its own
        kept = await _command_ids(js, "node-a")
        assert kept == for_a and await _command_ids(js, "node-b") == for_b
    finally:
        for call in calls:
            call.cancel()


async def _command_ids(js: JetStreamContext, node_id: str) -> list[str]:
    subject = subjects.command_subject(node_id)
    info = await js.stream_info(subjects.COMMANDS_STREAM)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(subjects.COMMANDS_STREAM, seq)
        if message.subject == subject:
            ids.append((message.headers or {})["Nats-Msg-Id"].split("/")[0])
    return ids


@pytest.fixture
async def capped_nats(tmp_path: Path) -> AsyncIterator[str]:
    """A nats-server whose JetStream may store exactly what HubState and the revocations
    reserve under SMALL: the store is full once they are."""
    reserved = SMALL.reserved()
    wanted = [
        subjects.TELEMETRY_STREAM,
        subjects.EVENTS_STREAM,
        subjects.COMMANDS_STREAM,
        subjects.RESULTS_STREAM,
        *(
            f"KV_{bucket}"
            for bucket in (
                subjects.NODES_BUCKET,
                subjects.TELEMETRY_HWM_BUCKET,
                subjects.IDEMPOTENCY_BUCKET,
                subjects.KEYS_BUCKET,
                subjects.REVOKED_BUCKET,
            )
        ),
    ]
    server = await EmbeddedNats.start(
        tmp_path, max_file_store_bytes=sum(reserved[name] for name in wanted)
    )
    try:
        yield server.url
    finally:
        await server.stop()


async def test_a_revocation_is_written_while_every_other_stream_and_bucket_is_full(
    capped_nats: str,
) -> None:
    state = await HubState.open(capped_nats, telemetry_retention=timedelta(hours=1), budget=SMALL)
    try:
        clock = lambda: datetime.now(UTC)  # noqa: E731
        revocations = await Revocations.open(state.js, clock, timedelta(seconds=10), budget=SMALL)
        js = state.js
        await _fill(js, subjects.RESULTS_STREAM, lambda i: subjects.result_subject(f"n{i}"))
        await _fill(js, subjects.COMMANDS_STREAM, lambda i: subjects.command_subject(f"n{i}"))
        await _fill(js, subjects.EVENTS_STREAM, lambda i: subjects.event_subject("x", "y", f"n{i}"))
        await _fill(js, subjects.TELEMETRY_STREAM, lambda i: subjects.telemetry_subject(f"n{i}"))
        for bucket in (
            subjects.NODES_BUCKET,
            subjects.TELEMETRY_HWM_BUCKET,
            subjects.IDEMPOTENCY_BUCKET,
            subjects.KEYS_BUCKET,
        ):
            await _fill(js, f"KV_{bucket}", functools.partial("$KV.{}.k{}".format, bucket))
        # The store holds what every other share reserved: no room for anything new...
        with pytest.raises(APIError) as no_room:
            await js.add_stream(name="MORE", subjects=["more"], max_bytes=KIB)
        assert no_room.value.err_code == 10047
        # ...and the revocations' share is still theirs.
        await revocations.revoke_node("node-a", by="admin", reason="stolen")
        await revocations.revoke_serial("0abc", by="admin", reason="stolen")
        assert set(revocations.nodes) == {"node-a"} and set(revocations.serials) == {"abc"}
    finally:
        await state.close()


async def _fill(js: JetStreamContext, stream: str, subject_of: Callable[[int], str]) -> None:
    """Publish on ever new subjects until the stream holds its whole budget: refused
    (discard new) or at its byte limit (discard old)."""
    config = (await js.stream_info(stream)).config
    limit = config.max_bytes or 0
    data = b"x" * min(KIB, (config.max_msg_size or KIB) // 2)
    for index in range(10 * limit // len(data)):
        try:
            await js.publish(subject_of(index), data, stream=stream)
        except ServiceUnavailableError as exc:
            assert exc.description == "maximum bytes exceeded", exc.description
            return
        if (await js.stream_info(stream)).state.bytes + 2 * len(data) > limit:
            return
    raise AssertionError(f"{stream} never filled")


def test_the_default_budget_is_sized_for_ten_thousand_nodes_as_docs_sizing_says() -> None:
    budget = StorageBudget()
    assert budget.nodes == 10_000
    assert budget.reserved()[subjects.RESULTS_STREAM] == 10_000 * budget.results.bytes
    assert budget.total_bytes() == sum(budget.reserved().values())
    sizing = (Path(__file__).parents[1] / "docs" / "sizing.md").read_text()
    assert f"total_bytes() = {budget.total_bytes():,} bytes" in sizing
    assert f"max_file_store: {budget.total_bytes()}" in sizing
    for stream in budget.reserved():
        assert f"`{stream.removeprefix('KV_')}`" in sizing, stream
