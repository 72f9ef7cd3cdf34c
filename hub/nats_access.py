"""Who may do what on the embedded NATS: the `authorization` section of its configuration.

nats-server (`tls { verify_and_map: true }`) maps a client to a user by its certificate,
trying, in order, its e-mail SANs, its DNS SANs, its URI SANs and then its subject DN, and
takes the first that names a user. Users here are named by SPIFFE URI only: node and user
certificates carry no DNS or e-mail SAN, and the hub's DNS names (`localhost`, its host
name) name no user, so every identity maps by its `spiffe://` URI and nothing else.

Rights, all else denied:
- the hub and `nats-admin`: everything;
- `nats-observer`: subscribe to `sentinel.events.>` and `sentinel.telemetry.>`, publish
  nothing (so no JetStream API either: it reads the live subjects);
- node `<id>`: pull from and acknowledge its own consumer `agent-<id>`, publish its own
  results, events and audit journal, and subscribe to its own reply prefix `_INBOX_<id>`
  (the agent connects with that inbox prefix), where its pulled commands and PubAcks
  arrive. No other JetStream API: it cannot read streams, KV or another node's consumer.

Invariants: the rights of nodes change only through `allow_node`/`remove_node`; each
reloads the running server (same PID, connections kept) only when the set of nodes
changed, and returns once the server confirmed the reload; a node removed loses its open
connections at that reload. With an external NATS (`embedded` is None) both are no-ops:
that server's access control is its operator's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable

import certs
from hub.embedded_nats import EmbeddedNats, NatsTls
from hub.settings import HubSettings
from sentinel import subjects
from sentinel.identity import Kind, spiffe_id, validate_node_id
from sentinel.nats_tls import wants_tls
from sentinel.tls import TlsFiles

log = logging.getLogger(__name__)

OBSERVER_SUBJECTS = (subjects.EVENTS_ALL, "sentinel.telemetry.>")


def node_publish(node_id: str) -> list[str]:
    consumer = subjects.command_consumer(node_id)
    return [
        f"$JS.API.CONSUMER.MSG.NEXT.{subjects.COMMANDS_STREAM}.{consumer}",
        f"$JS.ACK.{subjects.COMMANDS_STREAM}.{consumer}.>",
        subjects.result_subject(node_id),
        subjects.node_events(node_id),
        subjects.node_audit_subject(node_id),
    ]


def node_subscribe(node_id: str) -> list[str]:
    return [f"{subjects.node_inbox_prefix(node_id)}.>"]


def authorization(trust_domain: str, nodes: Iterable[str]) -> str:
    """The nats-server `authorization` section for these nodes and the fixed identities."""
    users = [
        _user(f"spiffe://{trust_domain}/hub", None),
        _user(spiffe_id(trust_domain, Kind.USER, certs.NATS_ADMIN), None),
        _user(
            spiffe_id(trust_domain, Kind.USER, certs.NATS_OBSERVER),
            {"publish": {"deny": [">"]}, "subscribe": {"allow": list(OBSERVER_SUBJECTS)}},
        ),
    ]
    for node_id in sorted(nodes):
        rights = {
            "publish": {"allow": node_publish(node_id)},
            "subscribe": {"allow": node_subscribe(node_id)},
        }
        users.append(_user(spiffe_id(trust_domain, Kind.NODE, node_id), rights))
    return "authorization {\n  users = [\n" + "".join(users) + "  ]\n}\n"


def _user(name: str, permissions: dict[str, dict[str, list[str]]] | None) -> str:
    # JSON is valid nats-server configuration syntax, and quotes `$`, `>` and `://` safely.
    entry: dict[str, object] = {"user": name}
    if permissions is not None:
        entry["permissions"] = permissions
    return f"    {json.dumps(entry)}\n"


class NatsAccess:
    """The set of nodes the embedded NATS admits, applied by configuration reload."""

    def __init__(self, embedded: EmbeddedNats | None, trust_domain: str) -> None:
        self.embedded = embedded
        self._trust_domain = trust_domain
        self._wanted: set[str] = set()
        self._applied: frozenset[str] = frozenset()
        self._applying = asyncio.Lock()

    @property
    def enforced(self) -> bool:
        """False for an external NATS, whose access control is not ours."""
        return self.embedded is not None

    @property
    def nodes(self) -> frozenset[str]:
        """The nodes the running server admits now."""
        return self._applied

    async def allow_node(self, node_id: str) -> None:
        """Give a node its rights (at enrollment, at each hello); idempotent."""
        await self.allow_nodes((node_id,))

    async def allow_nodes(self, node_ids: Iterable[str]) -> None:
        self._wanted.update(validate_node_id(node_id) for node_id in node_ids)
        await self._apply()

    async def remove_node(self, node_id: str) -> None:
        """Take a node's rights away and close its NATS connections (revocation)."""
        self._wanted.discard(validate_node_id(node_id))
        await self._apply()

    async def _apply(self) -> None:
        if self.embedded is None:
            return
        # One reload at a time; a caller that waited finds its change applied by the reload
        # before it, or applies every change made meanwhile in one.
        async with self._applying:
            wanted = frozenset(self._wanted)
            if wanted == self._applied:
                return
            await self.embedded.reload(authorization(self._trust_domain, wanted))
            added, removed = wanted - self._applied, self._applied - wanted
            self._applied = wanted
        log.info(
            "NATS access: %d nodes (added %s; removed %s)",
            len(wanted),
            ", ".join(sorted(added)) or "none",
            ", ".join(sorted(removed)) or "none",
        )


async def start_nats(settings: HubSettings, trust_domain: str) -> NatsAccess:
    """The embedded nats-server, locked down (unless `settings.nats_url` names another
    NATS), and the access control that goes with it. Issues the NATS server certificate
    and the fixed NATS identities if the certificate directory predates them."""
    if settings.nats_url:
        return NatsAccess(None, trust_domain)
    layout = certs.CertLayout(settings.certs_dir)
    created = certs.ensure_nats_identities(settings.certs_dir)
    if created:
        log.info("issued NATS certificates: %s", ", ".join(str(path) for path in created))
    embedded = await EmbeddedNats.start(
        settings.data_dir,
        sync=settings.nats_sync,
        tls=NatsTls(layout.nats_server_cert, layout.nats_server_key, layout.ca_cert),
        authorization=authorization(trust_domain, ()),
    )
    return NatsAccess(embedded, trust_domain)


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
