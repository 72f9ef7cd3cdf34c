"""The hub's NATS auth_callout service: NATS asks it who each connecting client is.

nats-server (configured by hub.nats_access.server_config) sends every client that is not
the hub itself to `$SYS.REQ.USER.AUTH` in the hub's account, with the client's verified
certificate chain, and admits the client only with the user JWT this service signs with
the callout account key. The answer is decided on every connect, from the certificate
alone: issued by the project CA (checked here again, not only by the server), within its
validity, a Sentinel identity of this trust domain, neither its serial nor its node
revoked, and an identity NATS knows (a node, `nats-admin` or `nats-observer`). The user
JWT carries the rights (hub.nats_access.rights_of), expires with the certificate, and
names the connection `<spiffe id>#<serial>`, so the hub can find it again.

Revocation: `close_revoked` lists every connection on every server (CONNZ) and closes
(KICK) those whose certificate is now revoked; the hub calls it when the revoked set
grows (hub.revocation) and once at start, so connections admitted before a revocation,
by any hub, are closed too. Hubs answer callouts as one queue group: each request is
answered once, by any hub.

Invariant: a client the service cannot judge (a malformed request, no certificate, the
hub away) is refused: NATS admits nobody the callout did not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats.errors
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import CollectorRegistry, Counter

from hub.auth import RevocationCheck
from hub.nats_access import CONNZ_ONE_SUBJECT, CONNZ_SUBJECT, KICK_SUBJECT, Rights, rights_of
from hub.nats_jwt import PREFIX_SERVER, AccountKey, decode
from sentinel.errors import PermissionDenied, SentinelError, Unavailable
from sentinel.identity import Identity, Kind, Role, identity_from_certificate, parse_spiffe_id

log = logging.getLogger(__name__)

CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
CALLOUT_QUEUE = "sentinel-hub-auth"
_PAGE = 256
_SERVER_REPLIES_S = 0.5


@dataclass(frozen=True, slots=True)
class Admitted:
    identity: Identity
    serial: str
    rights: Rights
    expires: datetime

    @property
    def user_name(self) -> str:
        return f"{self.identity.spiffe_id}#{self.serial}"


class CalloutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "sentinel_hub_nats_auth",
            "NATS connections the hub's auth_callout judged, by result and reason.",
            ["result", "reason"],
            registry=registry,
        )
        self.closed = Counter(
            "sentinel_hub_nats_revoked_connections_closed",
            "NATS connections of revoked certificates the hub closed.",
            registry=registry,
        )


class NatsCallout:
    def __init__(
        self,
        nc: NatsClient,
        key: Ed25519PrivateKey,
        *,
        trust_domain: str,
        ca: list[x509.Certificate],
        revocations: RevocationCheck,
        clock: Callable[[], datetime],
        metrics: CalloutMetrics,
    ) -> None:
        self._nc = nc
        self._key = AccountKey(key)
        self._trust_domain = trust_domain
        self._ca = ca
        self._revocations = revocations
        self._clock = clock
        self.metrics = metrics
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Answer callouts from now on; returns once the server has the subscription."""
        self._subscription = await self._nc.subscribe(
            CALLOUT_SUBJECT, queue=CALLOUT_QUEUE, cb=self._on_request
        )
        await self._nc.flush()

    async def stop(self) -> None:
        """Answer no more callouts (this hub is stopping; others may answer)."""
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()
                await self._nc.flush()
            self._subscription = None

    async def _on_request(self, msg: Msg) -> None:
        try:
            request = decode(msg.data.decode(errors="replace"), issuer_prefix=PREFIX_SERVER)
            claims = request.get("nats") or {}
            user_nkey = str(claims["user_nkey"])
            server_id = str(claims["server_id"]["id"])
        except (SentinelError, KeyError, TypeError) as exc:
            # Not a request nats-server signed: nobody to answer to.
            log.warning("ignored a malformed NATS auth request: %s", exc)
            self.metrics.decisions.labels("refused", "BAD_REQUEST").inc()
            return
        response: dict[str, object] = {"sub": user_nkey, "aud": server_id}
        try:
            admitted = self.judge(claims.get("client_tls") or {})
        except PermissionDenied as exc:
            log.info("NATS refused a client from %s: %s", _host(claims), exc)
            self.metrics.decisions.labels("refused", exc.reason).inc()
            response["nats"] = {"error": str(exc), "type": "authorization_response", "version": 2}
        else:
            self.metrics.decisions.labels("admitted", admitted.identity.kind.value).inc()
            response["nats"] = {
                "jwt": self._user_jwt(admitted, user_nkey),
                "type": "authorization_response",
                "version": 2,
            }
        try:
            await msg.respond(self._key.encode(response).encode())
        except nats.errors.Error as exc:  # the server times the client out: refused
            log.warning("cannot answer a NATS auth request: %r", exc)

    def judge(self, client_tls: dict[str, object]) -> Admitted:
        """Admit the client whose certificate the server verified, or raise PermissionDenied
        with a stable reason."""
        chains = client_tls.get("verified_chains") or []
        if not isinstance(chains, list) or not chains or not chains[0]:
            raise _refused("NO_CERTIFICATE", "the client presented no verified certificate")
        try:
            cert = x509.load_pem_x509_certificate(str(chains[0][0]).encode())
        except ValueError as exc:
            raise _refused("BAD_CERTIFICATE", str(exc)) from exc
        if not any(_issued_by(cert, ca) for ca in self._ca):
            raise _refused("UNKNOWN_CA", "the certificate is not issued by the project CA")
        now = self._clock()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise _refused("CERT_EXPIRED", "the certificate is not valid now")
        try:
            identity = identity_from_certificate(cert, self._trust_domain)
        except SentinelError as exc:
            raise _refused("BAD_IDENTITY", str(exc)) from exc
        serial = format(cert.serial_number, "x")
        if self._revocations.is_revoked(serial, identity):
            raise _refused("CERT_REVOKED", f"certificate {serial} of {identity} is revoked")
        rights = rights_of(identity)
        if rights is None:
            raise _refused("NOT_A_NATS_IDENTITY", f"{identity} has no rights on NATS")
        return Admitted(identity, serial, rights, cert.not_valid_after_utc)

    def _user_jwt(self, admitted: Admitted, user_nkey: str) -> str:
        return self._key.encode(
            {
                "sub": user_nkey,
                "aud": admitted.rights.account,  # the account the user is placed in
                "name": admitted.user_name,
                "exp": int(admitted.expires.timestamp()),
                "nats": admitted.rights.claims(),
            }
        )

    async def close_revoked(self, timeout_s: float = 5.0) -> int:
        """Close every connection, on every server, whose certificate is revoked; return
        how many. Rescans until a scan finds none, so a connection that a page shift hid
        from one scan is found by the next."""
        closed = 0
        try:
            for _ in range(3):
                revoked = [
                    (server, cid)
                    for server, cid, user in await self._connections(timeout_s)
                    if self._is_revoked_user(user)
                ]
                if not revoked:
                    break
                for server, cid in revoked:
                    await self._nc.request(
                        KICK_SUBJECT.replace("*", server),
                        json.dumps({"cid": cid}).encode(),
                        timeout=timeout_s,
                    )
                closed += len(revoked)
        except (nats.errors.Error, TimeoutError, ValueError, KeyError, TypeError) as exc:
            raise Unavailable(
                f"cannot list or close NATS connections: {exc!r}", reason="NATS_UNAVAILABLE"
            ) from exc
        if closed:
            self.metrics.closed.inc(closed)
            log.warning("closed %d NATS connections of revoked certificates", closed)
        return closed

    def _is_revoked_user(self, user: str) -> bool:
        uri, _, serial = user.rpartition("#")
        try:
            domain, kind, name = parse_spiffe_id(uri)
        except SentinelError:
            return False  # the hub itself, or a connection the callout did not name
        role = Role.NODE if kind is Kind.NODE else Role.VIEWER
        return self._revocations.is_revoked(serial, Identity(domain, kind, name, role))

    async def _connections(self, timeout_s: float) -> list[tuple[str, int, str]]:
        """(server id, client id, authorized user) of every open client connection: the
        first page from every server at once (PING), the rest from each server directly."""
        found: list[tuple[str, int, str]] = []
        for first in await self._ping_connz(timeout_s):
            server, page, offset = str(first["server"]["id"]), first, 0
            while True:
                rows = page["data"].get("connections") or []
                found += [(server, int(c["cid"]), str(c.get("authorized_user", ""))) for c in rows]
                if len(rows) < _PAGE:
                    break
                offset += _PAGE
                reply = await self._nc.request(
                    CONNZ_ONE_SUBJECT.replace("*", server),
                    _connz_options(offset),
                    timeout=timeout_s,
                )
                page = _connz_page(reply.data)
        return found

    async def _ping_connz(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every server's first CONNZ page: the first answer within `timeout_s`, each
        other within _SERVER_REPLIES_S of the one before (a cluster answers at once)."""
        inbox = self._nc.new_inbox()
        replies: asyncio.Queue[Msg] = asyncio.Queue()
        subscription = await self._nc.subscribe(inbox, cb=replies.put)
        pages: list[dict[str, Any]] = []
        try:
            await self._nc.publish(CONNZ_SUBJECT, _connz_options(0), reply=inbox)
            wait_s = timeout_s
            while True:
                try:
                    async with asyncio.timeout(wait_s):
                        message = await replies.get()
                except TimeoutError:
                    break
                pages.append(_connz_page(message.data))
                wait_s = _SERVER_REPLIES_S
        finally:
            await subscription.unsubscribe()
        if not pages:
            raise nats.errors.TimeoutError
        return pages


def _connz_options(offset: int) -> bytes:
    return json.dumps({"auth": True, "limit": _PAGE, "offset": offset}).encode()


def _connz_page(data: bytes) -> dict[str, Any]:
    page: dict[str, Any] = json.loads(data)
    if "error" in page:
        raise nats.errors.Error(f"CONNZ failed: {page['error']}")
    return page


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):  # another issuer, or another key type
        return False
    return True


def _host(claims: dict[str, object]) -> str:
    info = claims.get("client_info")
    return str(info.get("host", "?")) if isinstance(info, dict) else "?"


def _refused(reason: str, detail: str) -> PermissionDenied:
    return PermissionDenied(detail, reason=reason)
