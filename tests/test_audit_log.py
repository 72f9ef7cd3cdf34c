"""The hub's audit log against a real hub and a real nats-server: what is recorded, what the
stream refuses, two writers on one chain, checkpoints and the witness, `kill -9` of a
writer mid-append, and actuation failing closed when the audit log cannot be written."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nats.js import api
from nats.js.errors import APIError

import certs
from hub.app import Hub
from hub.audit_log import AuditLog
from hub.audit_rpc import AUDITED_METHODS, READ_ONLY_METHODS
from hub.auth import METHOD_RULES
from sentinel import audit, subjects
from sentinel.keyset import AUDIT, load_root_public_key, sign_keyset, trusted
from sentinel.keyset import ROOT as ROOT_PURPOSE
from sentinel.rpc_errors import reason_of
from sentinel.tls import secure_aio_channel
from sentinel.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    command_pb2,
    command_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
)
from tests.command_helpers import OPEN_POLICY, open_policy
from tests.conftest import WAIT_S, Pki, consumer_settled, hub_settings, nats_admin, within
from tests.test_observe_path import open_stream

ADMIN = "spiffe://sentinel.local/user/admin"
OPERATOR = "spiffe://sentinel.local/user/operator"
ROOT = Path(__file__).resolve().parents[1]
FROZEN = b"""\
version: 3
expires_at: 2100-01-01T00:00:00Z
allow:
  actions: ["*"]
  shadow: true
safe_actions: [agent.ping]
rules:
  - id: freeze-pings
    kind: freeze
    actions: [agent.ping]
    windows:
      - once: {start: "2000-01-01T00:00:00Z", end: "2100-01-01T00:00:00Z"}
"""


async def lines_of(hub: Hub) -> list[bytes]:
    head = await hub.audit.head()
    return [data async for _, data in hub.audit.read(1, head.seq)]


async def records_of(hub: Hub) -> list[audit.AuditRecord]:
    lines = await lines_of(hub)
    assert audit.verify_chain(lines, require_seal=False).ok
    return [audit.parse_record(line) for line in lines]


async def until_recorded(
    hub: Hub, action: str, count: int = 1, *, prefix: bool = False
) -> list[audit.AuditRecord]:
    """The records of `action` (or, with `prefix`, of every action starting with it) once
    there are `count` of them; polled with a deadline, as the stream notifies no bystander."""

    def wanted(record: audit.AuditRecord) -> bool:
        return record.action.startswith(action) if prefix else record.action == action

    async with asyncio.timeout(WAIT_S):
        while True:
            found = [r for r in await records_of(hub) if wanted(r)]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)


@pytest.fixture
async def node_a(hub: Hub, pki: Pki) -> AsyncIterator[None]:
    """node-a in the fleet (a raw agent stream), and a policy that lets commands through."""
    await open_policy(hub)
    async with secure_aio_channel(hub.address, pki.node("node-a")) as channel:
        call, _ = await open_stream(channel, "node-a")
        yield
        call.cancel()


def ping(node_id: str = "node-a", **fields: object) -> command_pb2.IssueCommandRequest:
    return command_pb2.IssueCommandRequest(
        target=command_pb2.CommandTarget(node_id=node_id), action="agent.ping", **fields
    )


def test_every_rpc_is_classified_as_audited_or_read_only() -> None:
    assert not AUDITED_METHODS & READ_ONLY_METHODS
    assert set(METHOD_RULES) == AUDITED_METHODS | READ_ONLY_METHODS


async def test_state_changing_rpcs_are_recorded_with_caller_and_status_reads_are_not(
    hub: Hub, pki: Pki
) -> None:
    async with (
        secure_aio_channel(hub.address, pki.user("admin")) as admin,
        secure_aio_channel(hub.address, pki.user("operator")) as operator,
        secure_aio_channel(hub.address, pki.user("viewer")) as viewer,
    ):
        put = policy_pb2.PutPolicyRequest(source_yaml=OPEN_POLICY.decode())
        await policy_pb2_grpc.PolicyServiceStub(admin).PutPolicy(put)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await policy_pb2_grpc.PolicyServiceStub(operator).PutPolicy(put)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await keys_pb2_grpc.KeyServiceStub(viewer).GetKeyset(keys_pb2.GetKeysetRequest())
        await policy_pb2_grpc.PolicyServiceStub(viewer).ListPolicyVersions(
            policy_pb2.ListPolicyVersionsRequest()
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await keys_pb2_grpc.KeyServiceStub(admin).RetireKey(
                keys_pb2.RetireKeyRequest(key_id="command-0000000000000000")
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as later:  # a handler that aborts itself
            await rollout_pb2_grpc.RolloutServiceStub(operator).CreateRollout(
                rollout_pb2.CreateRolloutRequest()
            )
        assert later.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # A handler's own abort reaches the caller at once; its record follows.
    await until_recorded(hub, "rpc", 4)
    records = await records_of(hub)
    rpcs = [(r.actor, r.target, r.outcome, r.reason) for r in records if r.action == "rpc"]
    assert rpcs == [
        (ADMIN, "sentinel.v1.PolicyService/PutPolicy", "OK", ""),
        (OPERATOR, "sentinel.v1.PolicyService/PutPolicy", "PERMISSION_DENIED", "ROLE_TOO_LOW"),
        (ADMIN, "sentinel.v1.KeyService/RetireKey", "NOT_FOUND", "KEY_NOT_FOUND"),
        (OPERATOR, "sentinel.v1.RolloutService/CreateRollout", "UNIMPLEMENTED", "NOT_IMPLEMENTED"),
    ]
    (changed,) = [r for r in records if r.action == "policy.changed"]
    assert (changed.actor, changed.policy_version) == (ADMIN, 2)
    assert changed.details["old_version"] == 1 and changed.details["new_version"] == 2
    assert changed.seq < next(r.seq for r in records if r.action == "rpc")


async def test_commands_issued_and_refused_carry_reason_and_policy_version(
    hub: Hub, pki: Pki, node_a: None
) -> None:
    async with (
        secure_aio_channel(hub.address, pki.user("operator")) as operator,
        secure_aio_channel(hub.address, pki.user("admin")) as admin,
    ):
        issued = await command_pb2_grpc.CommandServiceStub(operator).IssueCommand(ping())
        await hub.policies.put(FROZEN, "test")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await command_pb2_grpc.CommandServiceStub(operator).IssueCommand(ping())
        assert reason_of(refused.value) == "POLICY_DENIED"
        glass = command_pb2.BreakGlassRequest(reason="incident 42")
        overridden = await command_pb2_grpc.CommandServiceStub(admin).IssueCommand(
            ping(break_glass=glass)
        )
    records = await records_of(hub)
    first, second = [r for r in records if r.action == "command.issued"]
    assert (first.actor, first.target, first.policy_version) == (
        OPERATOR,
        issued.command.command_id,
        2,
    )
    assert first.details["action"] == "agent.ping" and first.details["nodes"] == ["node-a"]
    (refusal,) = [r for r in records if r.action == "command.refused"]
    assert (refusal.actor, refusal.reason, refusal.policy_version) == (OPERATOR, "POLICY_DENIED", 3)
    assert [v["rule"] for v in refusal.details["violations"]] == ["freeze-pings on node-a"]
    (broken,) = [r for r in records if r.action == "break_glass"]
    assert (broken.actor, broken.target, broken.reason) == (
        ADMIN,
        overridden.command.command_id,
        "incident 42",
    )
    assert broken.seq + 1 == second.seq and second.target == overridden.command.command_id


async def test_the_audit_stream_refuses_delete_and_purge(hub: Hub) -> None:
    await hub.audit.append("test.kept", actor="test")
    nc = await nats_admin(hub)
    try:
        for subject, body in (
            (f"$JS.API.STREAM.PURGE.{subjects.AUDIT_STREAM}", b"{}"),
            (f"$JS.API.STREAM.MSG.DELETE.{subjects.AUDIT_STREAM}", b'{"seq": 1}'),
        ):
            reply = json.loads((await nc.request(subject, body, timeout=5)).data)
            assert "not permitted" in reply["error"]["description"], reply
        info = await nc.jetstream().stream_info(subjects.AUDIT_STREAM)
        with pytest.raises(APIError, match="deny"):
            await nc.jetstream().update_stream(replace(info.config, deny_delete=False))
    finally:
        await nc.close()
    assert [r.action for r in await records_of(hub)] == ["test.kept"]


async def test_two_writers_appending_at_once_make_one_unforked_chain(hub: Hub) -> None:
    clients = [await nats_admin(hub) for _ in range(2)]
    try:
        writers = [
            await AuditLog.open(
                nc,
                nc.jetstream(),
                hub_id=f"writer-{index}",
                trust_domain="sentinel.local",
                signer=None,
                clock=lambda: datetime.now(UTC),
            )
            for index, nc in enumerate(clients)
        ]
        appends = [
            writer.append("test.concurrent", actor=writer.hub_actor, details={"n": n})
            for n in range(60)
            for writer in (*writers, hub.audit)
        ]
        await within(asyncio.gather(*appends), 60.0)
    finally:
        for nc in clients:
            await nc.close()
    records = await records_of(hub)  # verifies the chain
    assert [r.seq for r in records] == list(range(1, 181))
    for actor in ("hub/writer-0", "hub/writer-1", "hub/test-hub"):
        assert sorted(r.details["n"] for r in records if r.actor == actor) == list(range(60))


async def test_checkpoints_appear_at_the_interval_and_the_export_verifies(
    pki: Pki, tmp_path: Path
) -> None:
    settings = replace(
        hub_settings(pki, tmp_path / "hub"), audit_checkpoint_interval=timedelta(seconds=0.2)
    )
    hub = await Hub.start(settings)
    try:
        await hub.audit.append("test.one", actor="test")
        (checkpoint,) = await until_recorded(hub, audit.CHECKPOINT)
        assert checkpoint.details["through_seq"] == checkpoint.seq - 1
        assert await hub.audit.checkpoint() is None  # nothing new since
        await hub.audit.append("test.two", actor="test")
        await until_recorded(hub, audit.CHECKPOINT, 2)
        nc = await nats_admin(hub)
        try:
            kv = await nc.jetstream().key_value(subjects.AUDIT_BUCKET)
            witnessed = audit.parse_record((await kv.get("checkpoint")).value or b"")
        finally:
            await nc.close()
        assert witnessed.action == audit.CHECKPOINT and witnessed.seq >= 4
        lines = await export(hub, pki)
    finally:
        await hub.stop()
    root = load_root_public_key(pki.layout.root_pub)
    result = audit.verify_chain(lines, roots={root.key_id: root})
    assert result.problem is None
    assert result.checkpoints >= 2 and result.sealed_by.startswith("audit-")


async def export(hub: Hub, pki: Pki) -> list[bytes]:
    lines: list[bytes] = []
    async with secure_aio_channel(hub.address, pki.user("admin")) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        async for item in stub.ExportAudit(audit_pb2.ExportAuditRequest()):
            lines.append((item.record.line if item.HasField("record") else item.seal).encode())
    return lines


async def test_a_stream_deleted_and_created_again_is_reported_at_the_next_start(
    pki: Pki, tmp_path: Path
) -> None:
    """deny_delete keeps every record, but the stream itself can be deleted by an admin:
    the witness (the last checkpoint, in KV) makes that visible in the new chain."""
    settings = hub_settings(pki, tmp_path / "hub")
    hub = await Hub.start(settings)
    try:
        await hub.audit.append("test.before", actor="test")
        witnessed = await hub.audit.checkpoint()
        assert witnessed is not None
        nc = await nats_admin(hub)
        try:
            await nc.jetstream().delete_stream(subjects.AUDIT_STREAM)
        finally:
            await nc.close()
    finally:
        await hub.stop()
    hub = await Hub.start(settings)
    try:
        (mismatch,) = [r for r in await records_of(hub) if r.action == "audit.witness_mismatch"]
        assert mismatch.seq == 1 and mismatch.reason == "AUDIT_TRUNCATED"
        assert mismatch.details["witness_seq"] == witnessed.seq
    finally:
        await hub.stop()


CHILD = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path

from hub.audit_log import AuditLog
from tests.conftest import nats_user


async def main():
    nc = await nats_user(sys.argv[1], Path(sys.argv[2]))
    log = await AuditLog.open(
        nc, nc.jetstream(), hub_id="child", trust_domain="sentinel.local", signer=None,
        clock=lambda: datetime.now(UTC),
    )
    n = 0
    while True:
        await log.append("test.loop", actor=log.hub_actor, details={"n": n, "pad": "x" * 4000})
        n += 1
        if n == 10:
            print("appending", flush=True)

asyncio.run(main())
"""


async def test_kill_9_of_a_writer_mid_append_leaves_a_chain_that_verifies_and_continues(
    hub: Hub, pki: Pki
) -> None:
    rng = random.Random(39)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(4):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            hub.nats_url,
            str(pki.directory),
            cwd=ROOT,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        assert await within(child.stdout.readline(), 60.0) == b"appending\n"
        await asyncio.sleep(rng.uniform(0.0, 0.05))  # a random point in the loop, not a wait
        child.kill()
        await child.wait()
    after = await hub.audit.append("test.after", actor="test")
    records = await records_of(hub)  # verifies the whole chain
    assert len(records) >= 40 and records[-1] == after
    assert after.seq == len(records) and after.prev == records[-2].hash


async def test_no_command_is_stored_or_sent_when_the_audit_log_refuses_writes(
    hub: Hub, pki: Pki, node_a: None
) -> None:
    """The audit stream is full (as a full disk would make it): IssueCommand answers
    UNAVAILABLE/AUDIT_UNAVAILABLE and nothing reaches the command stream."""
    await hub.audit.append("test.first", actor="test")
    nc = await nats_admin(hub)
    js = nc.jetstream()
    try:
        info = await js.stream_info(subjects.AUDIT_STREAM)
        full = replace(info.config, max_msgs=info.state.messages, discard=api.DiscardPolicy.NEW)
        await js.update_stream(full)
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            stub = command_pb2_grpc.CommandServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.IssueCommand(ping(idempotency_key="k1"))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert reason_of(caught.value) == "AUDIT_UNAVAILABLE"
            assert hub.commands.command_ids() == []
            sent = await js.stream_info(subjects.COMMANDS_STREAM)
            assert sent.state.messages == 0
            await js.update_stream(replace(full, max_msgs=-1, discard=api.DiscardPolicy.OLD))
            issued = await stub.IssueCommand(ping(idempotency_key="k1"))  # the key was released
        assert hub.commands.command_ids() == [issued.command.command_id]
    finally:
        await nc.close()


async def test_issue_with_nats_stopped_is_unavailable_and_stores_nothing(
    pki: Pki, tmp_path: Path
) -> None:
    hub = await Hub.start(hub_settings(pki, tmp_path / "hub", store_timeout_s=1.0))
    try:
        await open_policy(hub)
        async with secure_aio_channel(hub.address, pki.node("node-a")) as node:
            call, _ = await open_stream(node, "node-a")
            assert hub._embedded is not None
            await hub._embedded.stop()
            async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
                stub = command_pb2_grpc.CommandServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.IssueCommand(ping())
            call.cancel()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(caught.value) in {"AUDIT_UNAVAILABLE", "STORE_UNAVAILABLE"}
        assert hub.commands.command_ids() == []
    finally:
        await hub.stop()


async def test_a_node_result_is_recorded_once_even_when_read_twice(hub: Hub) -> None:
    """The results reader records what a node reported; the same result stored twice
    (e.g. re-sent after a lost PubAck, past JetStream's dedup) is recorded once."""
    result = command_pb2.CommandResult(
        command_id="", node_id="node-a", state=command_pb2.COMMAND_STATE_REFUSED,
        reason="BAD_SIGNATURE", stream_seq=7, claimed_command_id="c-1",
    )  # fmt: skip
    nc = await nats_admin(hub)
    js = nc.jetstream()
    try:
        for copy in ("first", "second"):
            await js.publish(
                subjects.result_subject("node-a"),
                result.SerializeToString(),
                headers={"Nats-Msg-Id": f"test/{copy}"},
            )
        await consumer_settled(js, subjects.RESULTS_STREAM, subjects.RESULTS_CONSUMER)
    finally:
        await nc.close()
    (recorded,) = [r for r in await records_of(hub) if r.action.startswith("node.command.")]
    assert (recorded.action, recorded.actor, recorded.reason) == (
        "node.command.refused",
        "spiffe://sentinel.local/node/node-a",
        "BAD_SIGNATURE",
    )
    assert recorded.details["claimed_command_id"] == "c-1"


async def test_a_keyset_from_before_audit_keys_gains_one_in_a_new_version(
    pki: Pki, tmp_path: Path
) -> None:
    """Agents in the field hold keysets without an audit key: a hub that finds one in KV
    publishes the next version with the audit key added."""
    settings = hub_settings(pki, tmp_path / "hub")
    hub = await Hub.start(settings)
    try:
        keyset = await keyset_of(hub, pki)
        root = certs.load_signer(pki.layout.root_key, ROOT_PURPOSE)
        old_keys = [
            trusted(Ed25519PublicKey.from_public_bytes(k.ed25519_public_key), k.purpose)
            for k in keyset.keys
            if k.purpose != AUDIT
        ]
        now = datetime.now(UTC)
        older = sign_keyset(
            keyset.version + 1, old_keys, root, issued_at=now, expires_at=now + timedelta(days=30)
        )
        nc = await nats_admin(hub)
        try:
            kv = await nc.jetstream().key_value(subjects.KEYS_BUCKET)
            await kv.put("keyset", older.envelope)
        finally:
            await nc.close()
    finally:
        await hub.stop()
    hub = await Hub.start(settings)
    try:
        upgraded = await keyset_of(hub, pki)
    finally:
        await hub.stop()
    assert upgraded.version == older.version + 1
    audit_keys = [k.key_id for k in upgraded.keys if k.purpose == AUDIT]
    assert audit_keys == [certs.audit_signer(pki.layout).key_id]


async def keyset_of(hub: Hub, pki: Pki) -> keys_pb2.KeysetInfo:
    async with secure_aio_channel(hub.address, pki.user("viewer")) as channel:
        stub = keys_pb2_grpc.KeyServiceStub(channel)
        return (await stub.GetKeyset(keys_pb2.GetKeysetRequest())).keyset
