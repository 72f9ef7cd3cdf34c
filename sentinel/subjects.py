"""NATS subject and message-id names: the one place they are spelled.

Node ids are DNS labels (validated before they reach here), so they are always
a single, safe subject token.
"""

from __future__ import annotations

TELEMETRY_STREAM = "SENTINEL_TELEMETRY"
EVENTS_STREAM = "SENTINEL_EVENTS"
NODES_BUCKET = "sentinel_nodes"
TELEMETRY_HWM_BUCKET = "sentinel_telemetry_hwm"

COMMANDS_STREAM = "SENTINEL_COMMANDS"
RESULTS_STREAM = "SENTINEL_RESULTS"
COMMANDS_BUCKET = "sentinel_commands"
COMMAND_STATUS_BUCKET = "sentinel_command_status"
IDEMPOTENCY_BUCKET = "sentinel_command_keys"
KEYS_BUCKET = "sentinel_keys"
POLICIES_BUCKET = "sentinel_policies"
RESULTS_CONSUMER = "hub-results"
CERTS_BUCKET = "sentinel_certs"
REVOKED_BUCKET = "sentinel_revoked"
ENROLL_TOKENS_BUCKET = "sentinel_enroll_tokens"
ENROLLMENTS_BUCKET = "sentinel_enrollments"
ASSIGNED_LABELS_BUCKET = "sentinel_assigned_labels"

TELEMETRY_ALL = "sentinel.telemetry.*"
COMMANDS_ALL = "sentinel.cmd.*"
RESULTS_ALL = "sentinel.results.*"
EVENTS_ALL = "sentinel.events.>"

# The audit log: the hub's hash chain (one subject, denies delete and purge), what
# agents ship from their own journals, and the latest signed checkpoint (a witness
# kept outside the stream) with each agent journal's high-water mark.
AUDIT_STREAM = "SENTINEL_AUDIT"
AUDIT_SUBJECT = "sentinel.audit.log"
AGENT_AUDIT_STREAM = "SENTINEL_AGENT_AUDIT"
AGENT_AUDIT_ALL = "sentinel.audit.node.*"
AGENT_AUDIT_CONSUMER = "hub-agent-audit"
AUDIT_BUCKET = "sentinel_audit"


def telemetry_subject(node_id: str) -> str:
    return f"sentinel.telemetry.{node_id}"


def telemetry_msg_id(node_id: str, boot_id: str, seq: int) -> str:
    """`Nats-Msg-Id` of a batch: JetStream drops a second publish with the same id."""
    return f"{node_id}/{boot_id}/{seq}"


def event_subject(domain: str, event: str, node_id: str) -> str:
    return f"sentinel.events.{domain}.{event}.{node_id}"


def hwm_key(node_id: str, boot_id: str) -> str:
    return f"{node_id}.{boot_id}"


def command_subject(node_id: str) -> str:
    return f"sentinel.cmd.{node_id}"


def command_msg_id(command_id: str, node_id: str) -> str:
    """`Nats-Msg-Id` of one command envelope: exactly `<command_id>/<node_id>`."""
    return f"{command_id}/{node_id}"


def command_consumer(node_id: str) -> str:
    """The durable consumer through which one agent receives its commands."""
    return f"agent-{node_id}"


def result_subject(node_id: str) -> str:
    return f"sentinel.results.{node_id}"


def node_events(node_id: str) -> str:
    """Every event subject about one node (what that node itself may publish)."""
    return f"sentinel.events.*.*.{node_id}"


def node_audit_subject(node_id: str) -> str:
    """Where an agent ships its own audit journal."""
    return f"sentinel.audit.node.{node_id}"


def agent_audit_msg_id(node_id: str, journal_id: str, local_seq: int) -> str:
    """`Nats-Msg-Id` of a shipped journal record: a resend is dropped by JetStream."""
    return f"{node_id}/{journal_id}/{local_seq}"


def node_inbox_prefix(node_id: str) -> str:
    """The reply-subject prefix of one agent's NATS connection: `_INBOX_<node_id>`, a token
    of its own, so the right to read its replies (its commands among them) is its alone."""
    return f"_INBOX_{node_id}"


def node_of_subject(subject: str, prefix: str) -> str:
    """The node id token of `<prefix>.<node_id>`, or "" when the subject is not one."""
    head, _, node = subject.rpartition(".")
    return node if head == prefix else ""


def status_key(command_id: str, node_id: str) -> str:
    return f"{command_id}.{node_id}"
