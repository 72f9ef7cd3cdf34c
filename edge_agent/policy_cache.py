"""The policy bundle this agent enforces: the last one the hub sent, kept on disk.

`policy.bin` holds the signed envelope exactly as received; it is verified against
the keyset's policy keys whenever it is loaded. A file that does not verify is not
trusted: it is moved to `policy.bin.rejected` and the built-in default (`agent.ping`
and shadow runs only) applies until the hub sends a bundle — the same default an agent
holds before its first bundle.

Rollback protection (TUF's rule): a bundle with a lower version than the one held,
or the same version with other content, is refused and the held one kept; a bundle
whose signer is not a policy key of the trusted keyset is refused. Past `expires_at`
(by the agent clock) the agent is in safe mode: only the bundle's safe actions run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import policy
from edge_agent.trust import TrustStore
from sentinel.envelope import unwrap, verify
from sentinel.errors import FailedPrecondition, InvalidArgument, SentinelError
from sentinel.files import replace_durably
from sentinel.keyset import POLICY

log = logging.getLogger(__name__)

POLICY_FILE = "policy.bin"
MAX_POLICY_BYTES = 512 * 1024


class PolicyCache:
    def __init__(self, path: Path, trust: TrustStore, bundle: policy.Bundle) -> None:
        self._path = path
        self._trust = trust
        self.bundle = bundle

    @classmethod
    def open(cls, data_dir: Path, trust: TrustStore, now: datetime) -> PolicyCache:
        path = data_dir / POLICY_FILE
        default = policy.load_bundle(policy.DEFAULT_POLICY)
        if not path.exists():
            return cls(path, trust, default)
        try:
            bundle = _open(path.read_bytes(), trust, now)
        except SentinelError as exc:
            # Fail safe, not dead: the built-in default allows only pings, telemetry keeps
            # flowing, and the hub sends the current bundle at the next connect. The file is
            # kept aside for whoever investigates.
            rejected = path.with_name(f"{POLICY_FILE}.rejected")
            path.replace(rejected)
            log.error(
                "%s does not verify against the trusted keyset (%s): moved to %s; enforcing "
                "the built-in default until the hub sends a bundle",
                path,
                exc,
                rejected,
            )
            return cls(path, trust, default)
        return cls(path, trust, bundle)

    @property
    def version(self) -> int:
        return self.bundle.version

    def safe_mode(self, now: datetime) -> bool:
        return now >= self.bundle.expires_at

    def offer(self, envelope: bytes, now: datetime) -> bool:
        """Take a bundle from the hub; True if it replaced the held one. Raises
        SentinelError (POLICY_INVALID, POLICY_UNTRUSTED, POLICY_ROLLBACK) otherwise."""
        bundle = _open(envelope, self._trust, now)
        held = self.bundle
        if bundle.version == held.version and bundle.sha256 == held.sha256:
            if not self._path.exists():
                replace_durably(self._path, envelope)
            return False
        if bundle.version <= held.version:
            raise FailedPrecondition(
                f"policy version {bundle.version} ({bundle.sha256[:12]}) would replace version "
                f"{held.version} ({held.sha256[:12]}): refused",
                reason="POLICY_ROLLBACK",
            )
        replace_durably(self._path, envelope)
        self.bundle = bundle
        log.info("policy version %d in force (expires %s)", bundle.version, bundle.expires_at)
        return True


def _open(envelope: bytes, trust: TrustStore, now: datetime) -> policy.Bundle:
    try:
        source = verify(unwrap(envelope, max_bytes=MAX_POLICY_BYTES), trust.keys(now), POLICY)
    except SentinelError as exc:
        raise InvalidArgument(
            f"policy bundle not signed by a trusted policy key: {exc}", reason="POLICY_UNTRUSTED"
        ) from exc
    return policy.load_bundle(source)
