"""Who may do what on NATS: the accounts of the server's configuration, and the rights the
hub's auth_callout grants each certificate (hub.nats_callout).

Accounts:
- `SENTINEL` holds JetStream (every stream and bucket) and the hub, the one user the
  configuration names (mapped by its certificate's SPIFFE URI, `verify_and_map`); the
  hub's connection also serves the auth_callout, so it is the callout's `auth_users`.
  It imports system services (CONNZ and KICK) so the hub can find and close the
  connections of a revoked certificate.
- `NODES` holds every edge agent, and nothing else. It sees SENTINEL only through the
  services SENTINEL exports: pulling and acknowledging a command consumer, and publishing
  results, events and agent-audit records (JetStream answers each with a PubAck). A node
  may name any reply subject on a request, and NATS permissions do not constrain reply
  subjects: in its own account such a reply reaches no stream and no other identity's
  subscription, so it cannot redirect its messages into, say, the audit log.
- `SYS`, the system account, with no users; it exports CONNZ and KICK to SENTINEL.

Rights, all else denied (granted per connection by the callout, from the certificate):
- the hub: everything in SENTINEL (static);
- `nats-admin`: everything in SENTINEL;
- `nats-observer`: subscribe to `sentinel.events.>` and `sentinel.telemetry.>` in
  SENTINEL, publish nothing (so no JetStream API either: it reads the live subjects);
- node `<id>`, in NODES: pull from and acknowledge its own consumer `agent-<id>`, publish
  its own results, events and audit journal, and subscribe to its own reply prefix
  `_INBOX_<id>` (the agent connects with that inbox prefix), where its pulled commands
  and PubAcks arrive. No other JetStream API: it cannot read streams, KV or another
  node's consumer.

Invariant: the configuration names no node and changes with no enrollment or revocation;
a certificate's rights are decided when it connects (and revoked ones are closed by the
hub), so one configuration serves one embedded server or a cluster.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NatsClient

import certs
from hub.embedded_nats import EmbeddedNats, NatsTls
from hub.nats_jwt import AccountKey
from hub.settings import HubSettings
from hub.storage_budget import GIB, StorageBudget
from sentinel import subjects
from sentinel.identity import Identity, Kind
from sentinel.nats_tls import wants_tls
from sentinel.tls import TlsFiles

log = logging.getLogger(__name__)

HUB_ACCOUNT = "SENTINEL"
NODES_ACCOUNT = "NODES"
SYSTEM_ACCOUNT = "SYS"

OBSERVER_SUBJECTS = (subjects.EVENTS_ALL, "sentinel.telemetry.>")
# The system services the hub uses to close a revoked certificate's connections.
KICK_SUBJECT = "$SYS.REQ.SERVER.*.KICK"
CONNZ_SUBJECT = "$SYS.REQ.SERVER.PING.CONNZ"
CONNZ_ONE_SUBJECT = "$SYS.REQ.SERVER.*.CONNZ"
# Beyond the hub's budgets, room for an operator's own (budgeted) streams.
OPERATOR_STORAGE_BYTES = 1 * GIB
# Every user may ask which account it is in, and with which rights.
USER_INFO_SUBJECT = "$SYS.REQ.USER.INFO"
_SYSTEM_SERVICES = {KICK_SUBJECT: False, CONNZ_SUBJECT: True, CONNZ_ONE_SUBJECT: False}

# What SENTINEL exports for nodes, each a service (so a reply comes back to the
# requester's account); `True`: more than one reply per request (a pull's messages).
_NODE_SERVICES = {
    f"$JS.API.CONSUMER.MSG.NEXT.{subjects.COMMANDS_STREAM}.*": True,
    f"$JS.ACK.{subjects.COMMANDS_STREAM}.>": False,
    subjects.RESULTS_ALL: False,
    subjects.EVENTS_ALL: False,
    subjects.AGENT_AUDIT_ALL: False,
}


@dataclass(frozen=True, slots=True)
class Rights:
    """What one connection may do, in which account."""

    account: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    # -1: no limit of the connection's own.
    max_subscriptions: int = -1

    def claims(self) -> dict[str, object]:
        """The `nats` part of a user JWT granting these rights."""
        return {
            "pub": {"allow": list(self.publish)} if self.publish else {"deny": [">"]},
            "sub": {"allow": list(self.subscribe)} if self.subscribe else {"deny": [">"]},
            "subs": self.max_subscriptions,
            "data": -1,
            # The server's max_payload holds; a lower limit here would close an agent's
            # connection for one oversized result, where JetStream refuses just that message
            # (each stream's max_msg_size, hub.storage_budget).
            "payload": -1,
            "type": "user",
            "version": 2,
        }


# An agent holds a handful of subscriptions (its inbox, a pull): a bound on what one
# node's connection may make the server keep.
NODE_MAX_SUBSCRIPTIONS = 64

ADMIN_RIGHTS = Rights(HUB_ACCOUNT, (">",), (">",))
OBSERVER_RIGHTS = Rights(HUB_ACCOUNT, (), OBSERVER_SUBJECTS)


def node_publish(node_id: str) -> list[str]:
    consumer = subjects.command_consumer(node_id)
    return [
        f"$JS.API.CONSUMER.MSG.NEXT.{subjects.COMMANDS_STREAM}.{consumer}",
        f"$JS.ACK.{subjects.COMMANDS_STREAM}.{consumer}.>",
        subjects.result_subject(node_id),
        # The one event an agent announces itself; any other type would let a node fill
        # the events stream with types of its own making.
        subjects.event_subject("policy", "safe_mode", node_id),
        subjects.node_audit_subject(node_id),
    ]


def node_subscribe(node_id: str) -> list[str]:
    return [f"{subjects.node_inbox_prefix(node_id)}.>"]


def rights_of(identity: Identity) -> Rights | None:
    """The NATS rights of a certificate's identity; None: it is no NATS identity."""
    if identity.kind is Kind.NODE:
        return Rights(
            NODES_ACCOUNT,
            tuple(node_publish(identity.name)),
            tuple(node_subscribe(identity.name)),
            max_subscriptions=NODE_MAX_SUBSCRIPTIONS,
        )
    return {certs.NATS_ADMIN: ADMIN_RIGHTS, certs.NATS_OBSERVER: OBSERVER_RIGHTS}.get(identity.name)


def hub_user(trust_domain: str) -> str:
    return f"spiffe://{trust_domain}/hub"


def storage_limit_bytes(budget: StorageBudget) -> int:
    """What the hub's account (and the server) may store: every stream's and bucket's
    reserved budget, and room for an operator's own budgeted streams (benchmarks)."""
    return budget.total_bytes() + OPERATOR_STORAGE_BYTES


def server_config(trust_domain: str, issuer: str, storage_bytes: int) -> str:
    """The `accounts`, `system_account` and `authorization` sections of a nats-server
    configuration for Sentinel; `issuer` is the hub's callout account key (public nkey),
    `storage_bytes` what the hub's account may store (`storage_limit_bytes`). The server
    must also verify client certificates against the project CA and map them
    (`tls { verify_and_map: true }`), and allow that much file storage."""
    hub = hub_user(trust_domain)
    accounts = {
        HUB_ACCOUNT: {
            # Every stream the hub makes states its budget, which JetStream reserves: what
            # one stream (the audit log, the revocations) was promised, no other can take.
            # Not `max_bytes_required`: a server with it refuses to restore a stream stored
            # without max_bytes (every stream before the budgets), so an upgrade would start
            # with none of them; the hub gives each its budget when it starts.
            "jetstream": {"max_file": storage_bytes, "max_mem": -1},
            "users": [{"user": hub}],
            "exports": [_export(subject, many) for subject, many in _NODE_SERVICES.items()],
            "imports": [_import(SYSTEM_ACCOUNT, s) for s in _SYSTEM_SERVICES],
        },
        NODES_ACCOUNT: {"imports": [_import(HUB_ACCOUNT, s) for s in _NODE_SERVICES]},
        SYSTEM_ACCOUNT: {
            "exports": [_export(s, many) for s, many in _SYSTEM_SERVICES.items()],
        },
    }
    authorization = {
        "auth_callout": {"issuer": issuer, "account": HUB_ACCOUNT, "auth_users": [hub]},
    }
    # JSON is valid nats-server configuration syntax, and quotes `$`, `>` and `://` safely.
    return (
        f"accounts: {json.dumps(accounts, indent=2)}\n"
        f"system_account: {SYSTEM_ACCOUNT}\n"
        f"authorization: {json.dumps(authorization, indent=2)}\n"
    )


def _export(subject: str, many: bool) -> dict[str, str]:
    return {"service": subject, "response_type": "stream" if many else "singleton"}


def _import(account: str, subject: str) -> dict[str, dict[str, str]]:
    return {"service": {"account": account, "subject": subject}}


async def start_nats(settings: HubSettings, trust_domain: str) -> EmbeddedNats | None:
    """The embedded nats-server, locked down, with its auth_callout naming the hub's
    callout key; None when `settings.nats_url` names another NATS. Issues the NATS server
    certificate and the fixed NATS identities if the certificate directory predates them."""
    if settings.nats_url:
        return None
    layout = certs.CertLayout(settings.certs_dir)
    storage = storage_limit_bytes(StorageBudget())
    created = certs.ensure_nats_identities(settings.certs_dir)
    if created:
        log.info("issued NATS certificates: %s", ", ".join(str(path) for path in created))
    return await EmbeddedNats.start(
        settings.data_dir,
        sync=settings.nats_sync,
        tls=NatsTls(layout.nats_server_cert, layout.nats_server_key, layout.ca_cert),
        access=server_config(trust_domain, callout_issuer(layout), storage),
        max_file_store_bytes=storage,
        account=HUB_ACCOUNT,
    )


def callout_issuer(layout: certs.CertLayout) -> str:
    """The public account nkey of the hub's callout key (made on first use)."""
    return AccountKey(certs.nats_callout_key(layout)).public_nkey


def hub_client_tls(url: str, hub_tls: TlsFiles) -> TlsFiles | None:
    """The hub's certificate for a `tls://` NATS; None (and a warning) for a plain one."""
    if wants_tls(url):
        return hub_tls
    log.warning(
        "NATS at %s is not authenticated: every client on the network can read commands "
        "and publish results; use the embedded NATS or a tls:// URL",
        url,
    )
    return None


async def check_external(nc: NatsClient, url: str) -> bool:
    """Warn unless the NATS at `url` (not the hub's own) places the hub in the account
    whose auth_callout it serves, with the system services it needs; True if it does."""
    try:
        reply = await nc.request(USER_INFO_SUBJECT, b"", timeout=5)
        account = json.loads(reply.data).get("data", {}).get("account", "")
    except (nats.errors.Error, TimeoutError, ValueError, AttributeError) as exc:
        account = f"unknown ({exc!r})"
    if account != HUB_ACCOUNT:
        log.warning(
            "NATS at %s does not run Sentinel's access control (the hub is in account %s, "
            "not %s): revoked certificates are not refused there, and any certificate of "
            "the CA gets whatever that server grants; configure it with "
            "`sentinel certs nats-config` (see docs/security.md)",
            url,
            account,
            HUB_ACCOUNT,
        )
        return False
    return True
