"""Process-wide logging setup: one line per record, to stderr."""

from __future__ import annotations

import logging

# nats-py opens a plain stream and upgrades it with loop.start_tls (NATS sends INFO before
# TLS), so the stream's protocol believes it is not over TLS and returns True from
# eof_received; asyncio then warns at every close of a NATS connection. The warning says
# nothing about Sentinel or the connection (it closes as it should), so it is dropped.
_NATS_TLS_EOF_NOISE = "returning true from eof_received() has no effect when using ssl"


class _DropNatsTlsEofNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _NATS_TLS_EOF_NOISE


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("asyncio").addFilter(_DropNatsTlsEofNoise())
