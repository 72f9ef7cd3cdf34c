"""Node certificates the hub issues (at enrollment and renewal), and a record of each.

Invariants: the node id in a certificate is the one the hub decided (from the caller's
own certificate at renewal, from the token or checked CSR at enrollment), never
the CSR's word alone; every issued serial is recorded in JetStream KV
(`sentinel_certs`, key `<node>.<serial>`) before the certificate leaves the hub, so
`revoke --node` can name every serial a node was given, by any hub replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

import certs
from hub.state import bucket_keys, ensure_bucket, store_unavailable
from hub.storage_budget import StorageBudget
from sentinel import subjects
from sentinel.identity import validate_node_id

log = logging.getLogger(__name__)


class IssuedCertificate(msgspec.Struct, frozen=True):
    node_id: str
    serial: str
    not_after: float
    issued_at: float
    # "enroll" or "renew".
    reason: str


class NodeCertificates:
    def __init__(
        self,
        js: JetStreamContext,
        kv: KeyValue,
        certs_dir: Path,
        validity: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._js = js
        self._kv = kv
        self._certs_dir = certs_dir
        self.validity = validity
        self._clock = clock
        self.trust_domain = certs.load_trust_domain(certs_dir)
        self.ca_pem = certs.CertLayout(certs_dir).ca_cert.read_bytes()

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        certs_dir: Path,
        validity: timedelta,
        clock: Callable[[], datetime],
        budget: StorageBudget | None = None,
    ) -> NodeCertificates:
        budget = budget or StorageBudget()
        kv = await ensure_bucket(js, budget.bucket_config(budget.certificates))
        return cls(js, kv, certs_dir, validity, clock)

    async def issue(
        self, node_id: str, public_key: ec.EllipticCurvePublicKey, *, reason: str
    ) -> x509.Certificate:
        """Sign a certificate for `node_id` and `public_key`; recorded before returned."""
        validate_node_id(node_id)
        cert = await asyncio.to_thread(
            certs.sign_node_certificate,
            self._certs_dir,
            node_id,
            public_key,
            validity=self.validity,
        )
        record = IssuedCertificate(
            node_id=node_id,
            serial=certs.serial_hex(cert),
            not_after=cert.not_valid_after_utc.timestamp(),
            issued_at=self._clock().timestamp(),
            reason=reason,
        )
        with store_unavailable(f"recording certificate {record.serial} of {node_id}"):
            await self._kv.put(f"{node_id}.{record.serial}", msgspec.json.encode(record))
        log.info("issued certificate %s to node %s (%s)", record.serial, node_id, reason)
        return cert

    async def serials_of(self, node_id: str) -> list[str]:
        """Every serial the hub issued to `node_id`, oldest key first."""
        prefix = f"{validate_node_id(node_id)}."
        with store_unavailable("listing issued certificates"):
            keys = await bucket_keys(self._js, subjects.CERTS_BUCKET)
        return [key.removeprefix(prefix) for key in keys if key.startswith(prefix)]

    async def issued_nodes(self) -> set[str]:
        """Node ids the hub has ever issued a certificate to."""
        with store_unavailable("listing issued certificates"):
            keys = await bucket_keys(self._js, subjects.CERTS_BUCKET)
        return {key.split(".", 1)[0] for key in keys}

    async def node_of(self, serial: str) -> str:
        """The node a serial was issued to, or "" if no hub recorded it."""
        with store_unavailable("listing issued certificates"):
            keys = await bucket_keys(self._js, subjects.CERTS_BUCKET)
        return next((k.split(".", 1)[0] for k in keys if k.endswith(f".{serial}")), "")
