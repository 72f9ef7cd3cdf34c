"""Writing certificate-directory files so that no reader sees a half-written one.

Invariants: a private key file is created with mode 0600 by `os.open` and is
never chmod-ed afterwards (so it is never readable by others, not even for a
moment); every file appears under its final name atomically, written to a
temporary sibling first; `overwrite=False` never replaces an existing file,
even when two writers race.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sentinel.errors import FailedPrecondition

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def ensure_directory(path: Path, mode: int = 0o755) -> None:
    """Create `path` (and its parents) if absent; an existing directory is left as it is."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)


def write_secret(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write a private key, readable by its owner only."""
    _write_atomically(path, data, mode=SECRET_MODE, overwrite=overwrite)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate or public key, replacing any previous one."""
    _write_atomically(path, data, mode=PUBLIC_MODE, overwrite=True)


def _write_atomically(path: Path, data: bytes, *, mode: int, overwrite: bool) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            _link_new(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _link_new(source: Path, target: Path) -> None:
    # link(2), unlike rename(2), fails instead of replacing an existing target.
    try:
        os.link(source, target)
    except FileExistsError as exc:
        raise FailedPrecondition(
            f"{target} already exists; refusing to overwrite it",
            reason="FILE_EXISTS",
            path=target,
        ) from exc
