"""Small durable files: written whole or not at all.

`replace_durably` writes a temporary sibling, fsyncs it, renames it over the target
and fsyncs the directory, so after a crash the file holds the old or the new
content, never a torn mix, and a completed call survives a power loss.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def replace_durably(path: Path, data: bytes, mode: int = 0o600) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
