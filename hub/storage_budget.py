"""How much JetStream storage each stream and bucket may hold: every number in one place.

Every stream and bucket has an explicit `max_bytes`, which JetStream reserves against the
server's and the account's storage limit when it creates or updates the stream; it
refuses a reservation that does not fit (err 10047), and the hub then does not start
(ConfigError STORAGE_BUDGET_TOO_LARGE). So the server must allow `total_bytes()`
(`jetstream { max_file_store }`, and `max_file` on the account that holds the streams).
Not `max_bytes_required`: it would keep the server from restoring the streams an older
version stored without a budget; a stream an operator creates beside the hub's must
state its own `max_bytes`, or it is not reserved and can take the others' room. Since
every stream stays within its own budget and the budgets add up to the limit, no write is
ever refused because another stream filled the store: the audit log's, the revocations'
and the enrollments' shares are theirs alone, however full the rest is.

Where subjects are per node (`per_node`), a node's share is `max_msgs_per_subject`
messages of at most `max_msg_bytes` each, and the stream holds `nodes` shares of `bytes`
(sized for typical messages):
- discard new (commands, results, agent audit journals): a node whose share is full is
  refused its next message on that subject (JetStream err 10077, "maximum messages per
  subject exceeded"; an issued command gets RESOURCE_EXHAUSTED NODE_QUEUE_FULL), and
  nothing stored, of that node or another, is ever evicted;
- discard old (telemetry, events): a node's flood rolls only its own subject's oldest
  messages out. Events are not refused because the hub announces on the node's own event
  subjects too: refusing them would let a node make the hub's announcements about it
  (and so command fan-outs and result reading) fail.
KV buckets discard new (a full bucket refuses a put; a key keeps one value); the ones a
write must always reach (revocations, enrollments) are sized far above their use.

Invariant: `total_bytes()` is the sum of every stream's and bucket's `max_bytes`; the hub
creates exactly the streams `reserved()` names. Sizing and what a full share refuses:
docs/sizing.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from nats.js import api
from nats.js.errors import APIError

from sentinel import subjects

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
FLEET_NODES = 10_000
# The largest message NATS carries by default (`max_payload`).
NATS_MAX_PAYLOAD = 1 * MIB
# A week of telemetry batches at the agent's default 5 s batch interval: a
# `--telemetry-retention` of up to a week is never cut short by the count.
TELEMETRY_BATCHES_PER_NODE = 7 * 17_280

# The stream of hub.sent_history (what the hub sent, for the policy's rate limits).
RATE_HISTORY_STREAM = "SENTINEL_RATE_HISTORY"
# JetStream's answer when a stream or one of its subjects is full (discard new).
STORE_FULL_ERR = 10077
SUBJECT_FULL = "maximum messages per subject exceeded"
# What JetStream says when it cannot reserve a stream's max_bytes.
RESERVATION_REFUSED_ERR = 10047


def _kv(bucket: str) -> str:
    return f"KV_{bucket}"


@dataclass(frozen=True, slots=True)
class Budget:
    """One stream's or bucket's limits. `bytes` is the whole stream's, or each node's
    share when `per_node`; `discard_new`: a full stream (or subject) refuses the next
    message, else it drops its oldest."""

    stream: str
    bytes: int
    max_msg_bytes: int
    max_msgs_per_subject: int = -1
    per_node: bool = False
    discard_new: bool = True


@dataclass(frozen=True, slots=True)
class StorageBudget:
    """The budgets of every stream and bucket the hub keeps, for a fleet of `nodes`."""

    nodes: int = FLEET_NODES
    # Streams whose subjects are per node.
    telemetry: Budget = Budget(
        subjects.TELEMETRY_STREAM,
        bytes=1 * MIB,
        max_msg_bytes=NATS_MAX_PAYLOAD,
        max_msgs_per_subject=TELEMETRY_BATCHES_PER_NODE,
        per_node=True,
        discard_new=False,
    )
    events: Budget = Budget(
        subjects.EVENTS_STREAM,
        bytes=256 * KIB,
        max_msg_bytes=64 * KIB,
        max_msgs_per_subject=256,
        per_node=True,
        discard_new=False,
    )
    commands: Budget = Budget(
        subjects.COMMANDS_STREAM,
        bytes=512 * KIB,
        # Agents refuse an envelope over 64 KiB themselves, and report it (MALFORMED).
        max_msg_bytes=NATS_MAX_PAYLOAD,
        max_msgs_per_subject=512,
        per_node=True,
    )
    results: Budget = Budget(
        subjects.RESULTS_STREAM,
        bytes=512 * KIB,
        max_msg_bytes=64 * KIB,
        max_msgs_per_subject=1024,
        per_node=True,
    )
    agent_audit: Budget = Budget(
        subjects.AGENT_AUDIT_STREAM,
        bytes=1 * MIB,
        max_msg_bytes=64 * KIB,
        max_msgs_per_subject=1024,
        per_node=True,
    )
    # Streams the hub alone writes.
    audit: Budget = Budget(subjects.AUDIT_STREAM, bytes=12 * GIB, max_msg_bytes=NATS_MAX_PAYLOAD)
    rate_history: Budget = Budget(
        RATE_HISTORY_STREAM, bytes=512 * MIB, max_msg_bytes=1 * KIB, discard_new=False
    )
    # KV buckets.
    node_registry: Budget = Budget(
        _kv(subjects.NODES_BUCKET), bytes=16 * KIB, max_msg_bytes=256 * KIB, per_node=True
    )
    telemetry_marks: Budget = Budget(
        _kv(subjects.TELEMETRY_HWM_BUCKET), bytes=32 * KIB, max_msg_bytes=1 * KIB, per_node=True
    )
    idempotency_keys: Budget = Budget(
        _kv(subjects.IDEMPOTENCY_BUCKET), bytes=64 * MIB, max_msg_bytes=1 * KIB
    )
    keys: Budget = Budget(_kv(subjects.KEYS_BUCKET), bytes=8 * MIB, max_msg_bytes=1 * MIB)
    policies: Budget = Budget(
        _kv(subjects.POLICIES_BUCKET), bytes=256 * MIB, max_msg_bytes=NATS_MAX_PAYLOAD
    )
    command_specs: Budget = Budget(
        _kv(subjects.COMMANDS_BUCKET), bytes=512 * MIB, max_msg_bytes=NATS_MAX_PAYLOAD
    )
    command_statuses: Budget = Budget(
        _kv(subjects.COMMAND_STATUS_BUCKET),
        bytes=128 * KIB,
        max_msg_bytes=256 * KIB,
        per_node=True,
    )
    certificates: Budget = Budget(
        _kv(subjects.CERTS_BUCKET), bytes=16 * KIB, max_msg_bytes=4 * KIB, per_node=True
    )
    revocations: Budget = Budget(
        _kv(subjects.REVOKED_BUCKET), bytes=64 * MIB, max_msg_bytes=4 * KIB
    )
    enrollment_tokens: Budget = Budget(
        _kv(subjects.ENROLL_TOKENS_BUCKET), bytes=64 * MIB, max_msg_bytes=16 * KIB
    )
    enrollments: Budget = Budget(
        _kv(subjects.ENROLLMENTS_BUCKET), bytes=4 * KIB, max_msg_bytes=4 * KIB, per_node=True
    )
    audit_witness: Budget = Budget(
        _kv(subjects.AUDIT_BUCKET), bytes=4 * KIB, max_msg_bytes=64 * KIB, per_node=True
    )

    def budgets(self) -> list[Budget]:
        return [
            value for item in fields(self) if isinstance(value := getattr(self, item.name), Budget)
        ]

    def max_bytes(self, budget: Budget) -> int:
        return budget.bytes * self.nodes if budget.per_node else budget.bytes

    def reserved(self) -> dict[str, int]:
        """What each stream (a bucket's is `KV_<bucket>`) reserves, by name."""
        return {budget.stream: self.max_bytes(budget) for budget in self.budgets()}

    def total_bytes(self) -> int:
        """What the server's and the account's JetStream file storage must allow."""
        return sum(self.reserved().values())

    def stream_config(self, budget: Budget, **config: Any) -> api.StreamConfig:
        """A file stream named after `budget`, with its limits and `config`."""
        per_subject = budget.max_msgs_per_subject
        return api.StreamConfig(
            name=budget.stream,
            storage=api.StorageType.FILE,
            max_bytes=self.max_bytes(budget),
            max_msg_size=budget.max_msg_bytes,
            max_msgs_per_subject=per_subject,
            discard=api.DiscardPolicy.NEW if budget.discard_new else api.DiscardPolicy.OLD,
            discard_new_per_subject=budget.discard_new and per_subject > 0,
            **config,
        )

    def bucket_config(
        self, budget: Budget, *, ttl_s: float | None = None, history: int = 1
    ) -> api.StreamConfig:
        """The stream of a KV bucket as nats-py's `create_key_value` makes it, with the
        budget's limits: updating it keeps every key (see hub.state.ensure_bucket)."""
        bucket = budget.stream.removeprefix("KV_")
        return api.StreamConfig(
            name=budget.stream,
            subjects=[f"$KV.{bucket}.>"],
            storage=api.StorageType.FILE,
            allow_rollup_hdrs=True,
            allow_msg_ttl=True,
            deny_delete=True,
            discard=api.DiscardPolicy.NEW,
            duplicate_window=min(ttl_s, 120.0) if ttl_s else 120.0,
            max_age=ttl_s,
            max_bytes=self.max_bytes(budget),
            max_consumers=-1,
            max_msg_size=budget.max_msg_bytes,
            max_msgs=-1,
            max_msgs_per_subject=history,
            num_replicas=1,
        )


def subject_full(exc: APIError) -> bool:
    """JetStream refused a message because its subject's share is full."""
    return exc.err_code == STORE_FULL_ERR and exc.description == SUBJECT_FULL


def stream_full(exc: APIError) -> bool:
    """JetStream refused a message because the stream (or one subject) is full."""
    return exc.err_code == STORE_FULL_ERR and (exc.description or "").startswith("maximum ")


__all__ = [
    "FLEET_NODES",
    "GIB",
    "KIB",
    "MIB",
    "RATE_HISTORY_STREAM",
    "RESERVATION_REFUSED_ERR",
    "Budget",
    "StorageBudget",
    "stream_full",
    "subject_full",
]
