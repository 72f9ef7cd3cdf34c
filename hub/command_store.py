"""Commands and their per-node progress, durable in JetStream KV, viewed from memory.

Buckets: `sentinel_commands` (one `Command` per id: what was asked, of which nodes,
and whether every envelope was published) and `sentinel_command_status` (one record
per `<command_id>.<node_id>`: the node's state, reason, plan, and the outcomes already
announced as events). A node without a status record is pending. Both buckets expire
entries after the retention, like the streams that carry commands.

Invariants:
- the in-memory view follows the buckets through KV watches, so every hub replica
  (and a restarted hub) sees every write; a local write is applied at once as well,
  so a caller reads its own writes;
- a node's state only moves forward: from pending to one final state, once. Later
  reports about the same node (a replayed copy, refused) are announced but do not
  change the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from hub.state import ensure_bucket
from hub.storage_budget import StorageBudget
from sentinel import subjects
from sentinel.tasks import cancel_and_wait
from sentinel.v1 import command_pb2

log = logging.getLogger(__name__)

PENDING = command_pb2.COMMAND_STATE_PENDING
FINAL_STATES = frozenset(
    {
        command_pb2.COMMAND_STATE_EXECUTED,
        command_pb2.COMMAND_STATE_PLANNED,
        command_pb2.COMMAND_STATE_REFUSED,
        command_pb2.COMMAND_STATE_FAILED,
        command_pb2.COMMAND_STATE_EXPIRED,
        command_pb2.COMMAND_STATE_INTERRUPTED,
    }
)


_Apply = Callable[[str, bytes | None, int | None], Awaitable[None]]


class StatusRecord(msgspec.Struct, frozen=True):
    status: bytes  # NodeCommandStatus
    announced: tuple[str, ...] = ()
    state: int = 0  # the status's state, readable without decoding it

    def decoded(self) -> command_pb2.NodeCommandStatus:
        return command_pb2.NodeCommandStatus.FromString(self.status)


class CommandStore:
    def __init__(self, commands: KeyValue, statuses: KeyValue) -> None:
        self._commands_kv = commands
        self._statuses_kv = statuses
        self._commands: dict[str, command_pb2.Command] = {}
        self._targets: dict[str, frozenset[str]] = {}
        self._statuses: dict[str, dict[str, StatusRecord]] = {}
        self._revisions: dict[tuple[str, str], int] = {}
        # Change counter: which node of which command changed when (for watchers).
        self._changes = 0
        self._changed_at: dict[str, dict[str, int]] = {}
        self._changed = asyncio.Condition()
        self._watchers: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls, js: JetStreamContext, retention: timedelta, budget: StorageBudget | None = None
    ) -> CommandStore:
        budget = budget or StorageBudget()
        ttl_s = retention.total_seconds()
        commands = await ensure_bucket(js, budget.bucket_config(budget.command_specs, ttl_s=ttl_s))
        statuses = await ensure_bucket(
            js, budget.bucket_config(budget.command_statuses, ttl_s=ttl_s)
        )
        store = cls(commands, statuses)
        await store._start_watching()
        return store

    async def close(self) -> None:
        await cancel_and_wait(*self._watchers)

    # -- reads -------------------------------------------------------------------------

    def get(self, command_id: str) -> command_pb2.Command | None:
        """The command with every node's status and the aggregate state."""
        spec = self._commands.get(command_id)
        if spec is None:
            return None
        command = command_pb2.Command()
        command.CopyFrom(spec)
        del command.nodes[:]
        records = self._statuses.get(command_id, {})
        for node in spec.nodes:
            record = records.get(node.node_id)
            command.nodes.append(record.decoded() if record else node)
        command.state = aggregate(s.state for s in command.nodes)
        return command

    def spec(self, command_id: str) -> command_pb2.Command | None:
        """The command as stored: what was asked of which nodes, without their progress."""
        spec = self._commands.get(command_id)
        if spec is None:
            return None
        copy = command_pb2.Command()
        copy.CopyFrom(spec)
        return copy

    def last_change(self, command_id: str) -> int:
        nodes = self._changed_at.get(command_id)
        return max(nodes.values()) if nodes else 0

    def statuses_since(
        self, command_id: str, after: int
    ) -> tuple[int, list[command_pb2.NodeCommandStatus]]:
        """(change counter now, the statuses of nodes that changed after `after`; with
        `after` 0, every node's). Decodes only what changed: a watcher of a command on
        thousands of nodes costs per change, not per node."""
        spec = self._commands.get(command_id)
        if spec is None:
            return after, []
        changed_at = self._changed_at.get(command_id, {})
        records = self._statuses.get(command_id, {})
        if after == 0:
            nodes = [n.node_id for n in spec.nodes]
        else:
            nodes = [n for n, at in changed_at.items() if at > after]
        statuses = []
        for node_id in nodes:
            record = records.get(node_id)
            statuses.append(
                record.decoded()
                if record
                else command_pb2.NodeCommandStatus(node_id=node_id, state=PENDING)
            )
        return max([after, *changed_at.values()]), statuses

    def all_final(self, command_id: str) -> bool:
        spec = self._commands.get(command_id)
        records = self._statuses.get(command_id, {})
        if spec is None or len(records) < len(spec.nodes):
            return False
        return all(r.state in FINAL_STATES for r in records.values())

    def targets(self, command_id: str, node_id: str) -> bool:
        """Whether the command was issued to the node (without copying the command)."""
        return node_id in self._targets.get(command_id, frozenset())

    def status(self, command_id: str, node_id: str) -> StatusRecord | None:
        return self._statuses.get(command_id, {}).get(node_id)

    def command_ids(self) -> list[str]:
        """Newest first."""
        return sorted(
            self._commands,
            key=lambda c: (self._commands[c].issued_at.ToNanoseconds(), c),
            reverse=True,
        )

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(predicate)

    # -- writes ------------------------------------------------------------------------

    async def put_command(self, command: command_pb2.Command) -> None:
        data = command.SerializeToString(deterministic=True)
        revision = await self._commands_kv.put(command.command_id, data)
        await self._apply_command(command.command_id, data, revision)

    async def put_status(self, command_id: str, node_id: str, record: StatusRecord) -> None:
        key = subjects.status_key(command_id, node_id)
        data = msgspec.msgpack.encode(record)
        revision = await self._statuses_kv.put(key, data)
        await self._apply_status(key, data, revision)

    # -- the view ----------------------------------------------------------------------

    async def _start_watching(self) -> None:
        for kv, apply in (
            (self._commands_kv, self._apply_command),
            (self._statuses_kv, self._apply_status),
        ):
            watcher = await kv.watchall()
            # Everything stored so far arrives first, then None: the view is complete.
            while True:
                entry = await watcher.updates(timeout=30)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                await apply(entry.key, entry.value, entry.revision)
            self._watchers.append(
                asyncio.create_task(self._follow(watcher, apply), name=f"hub-watch-{kv}")
            )

    async def _follow(self, watcher: KeyValue.KeyWatcher, apply: _Apply) -> None:
        try:
            async for entry in watcher:
                if entry is not None and entry.value:
                    await apply(entry.key, entry.value, entry.revision)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _apply_command(self, key: str, data: bytes | None, revision: int | None) -> None:
        if not data or not self._newer("c", key, revision):
            return
        command = command_pb2.Command.FromString(data)
        self._commands[key] = command
        self._targets[key] = frozenset(n.node_id for n in command.nodes)
        await self._notify()

    async def _apply_status(self, key: str, data: bytes | None, revision: int | None) -> None:
        if not data or not self._newer("s", key, revision):
            return
        command_id, _, node_id = key.partition(".")
        record = msgspec.msgpack.decode(data, type=StatusRecord)
        if not record.state:  # written before the field existed
            record = StatusRecord(record.status, record.announced, record.decoded().state)
        self._statuses.setdefault(command_id, {})[node_id] = record
        self._changes += 1
        self._changed_at.setdefault(command_id, {})[node_id] = self._changes
        await self._notify()

    def _newer(self, kind: str, key: str, revision: int | None) -> bool:
        known = self._revisions.get((kind, key), 0)
        if revision is not None and revision <= known:
            return False
        self._revisions[(kind, key)] = revision or known
        return True

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def aggregate(
    states: Iterable[command_pb2.CommandState],
) -> command_pb2.CommandState:
    """The least advanced state: pending while any node is; else the first problem, if any."""
    seen = list(states)
    if not seen:
        return PENDING
    for state in (
        command_pb2.COMMAND_STATE_AWAITING_APPROVAL,
        PENDING,
        command_pb2.COMMAND_STATE_INTERRUPTED,
        command_pb2.COMMAND_STATE_FAILED,
        command_pb2.COMMAND_STATE_REFUSED,
        command_pb2.COMMAND_STATE_EXPIRED,
        command_pb2.COMMAND_STATE_PLANNED,
    ):
        if state in seen:
            return state
    return command_pb2.COMMAND_STATE_EXECUTED
