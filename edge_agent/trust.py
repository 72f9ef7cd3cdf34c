"""What the agent trusts to sign commands: the pinned root key and the keyset it signed.

The keyset arrives over the Connect stream and is persisted (`keyset.bin`, the exact
signed envelope); on every load it is verified again against the pinned root, so a
file edited on disk is refused, not trusted. See `sentinel.keyset.accept` for the
rules: higher versions only, same version only with the same bytes, never expired.

`synced` says whether the hub confirmed, in this process's life, that the agent
holds its current keyset. Until then a command signed by a key the agent does not
know may be newer than its keyset, and is deferred instead of refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from sentinel.envelope import TrustedKey
from sentinel.errors import ConfigError, SentinelError
from sentinel.files import replace_durably
from sentinel.keyset import Keyset, accept, load_root_public_key, open_keyset

log = logging.getLogger(__name__)

KEYSET_FILE = "keyset.bin"


class TrustStore:
    def __init__(self, path: Path, roots: Mapping[str, TrustedKey], keyset: Keyset | None) -> None:
        self._path = path
        self._roots = roots
        self.keyset = keyset
        # The hub's current keyset version, from its last hello reply (0: not heard yet).
        self.hub_version = 0

    @classmethod
    def open(cls, data_dir: Path, root_key: Path) -> TrustStore:
        root = load_root_public_key(root_key)
        roots = {root.key_id: root}
        path = data_dir / KEYSET_FILE
        keyset = None
        if path.exists():
            try:
                keyset = open_keyset(path.read_bytes(), roots)
            except SentinelError as exc:
                raise ConfigError(
                    f"{path} does not verify against the root key {root_key} ({exc}); "
                    "move it away and the hub sends the current keyset",
                    reason="KEYSET_CORRUPT",
                ) from exc
        return cls(path, roots, keyset)

    @property
    def version(self) -> int:
        return self.keyset.version if self.keyset else 0

    def keys(self, now: datetime) -> Mapping[str, TrustedKey]:
        return self.keyset.usable(now) if self.keyset else {}

    def offer(self, envelope: bytes, now: datetime) -> bool:
        """Take a keyset from the hub; True if it replaced the held one. Raises
        SentinelError (KEYSET_INVALID, KEYSET_ROLLBACK, KEYSET_EXPIRED) otherwise."""
        keyset = accept(self.keyset, envelope, self._roots, now)
        if keyset is self.keyset:
            return False
        replace_durably(self._path, keyset.envelope)
        self.keyset = keyset
        log.info("keyset version %d trusted (%d keys)", keyset.version, len(keyset.keys))
        return True

    @property
    def synced(self) -> bool:
        """The hub confirmed, in this process's life, that we hold its current keyset."""
        return 0 < self.hub_version <= self.version


class AgentClock:
    """Time as the agent judges commands: never earlier than the newest issued-at it
    has verified (persisted), so turning the system clock back cannot revive an
    expired command (the Uptane rule)."""

    def __init__(self, path: Path, system: Callable[[], datetime]) -> None:
        self._path = path
        self._system = system
        self._high_water = self._read()

    def now(self) -> datetime:
        system = self._system()
        return max(system, self._high_water) if self._high_water else system

    def observe(self, verified_issued_at: datetime) -> None:
        if self._high_water is None or verified_issued_at > self._high_water:
            self._high_water = verified_issued_at
            replace_durably(self._path, verified_issued_at.isoformat().encode())

    def floor(self) -> datetime | None:
        """The persisted high-water: the agent clock is never earlier than this."""
        return self._high_water

    def _read(self) -> datetime | None:
        try:
            moment = datetime.fromisoformat(self._path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ConfigError(
                f"{self._path} is corrupt; move it away (the agent clock restarts from the "
                "system clock)",
                reason="STATE_CORRUPT",
            )
        return moment
