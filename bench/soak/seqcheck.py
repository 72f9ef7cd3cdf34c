"""Seq-by-seq verification shared by the soak runs: what a node's batches look like in
`sentinel.telemetry.<node>`, and what was lost or stored twice."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

import certs
from sentinel import nats_tls, subjects
from sentinel.tls import TlsFiles
from sentinel.v1 import telemetry_pb2


async def nats_admin(url: str, certs_dir: Path) -> NatsClient:
    """A client of the hub's NATS with every right (reading streams needs the JetStream API)."""
    layout, admin = certs.CertLayout(certs_dir), certs.NATS_ADMIN
    tls = TlsFiles.load(layout.ca_cert, layout.user_cert(admin), layout.user_key(admin))
    return await nats_tls.connect(url, tls)


async def stored_seqs(js: JetStreamContext, node_id: str) -> list[int]:
    """Every batch seq stored for `node_id`, in stream order."""
    subject = subjects.telemetry_subject(node_id)
    info = await js.stream_info(subjects.TELEMETRY_STREAM, subjects_filter=subject)
    count = int((info.state.subjects or {}).get(subject, 0))
    subscription = await js.subscribe(subject, ordered_consumer=True)
    try:
        return [
            telemetry_pb2.TelemetryBatch.FromString((await subscription.next_msg(30)).data).seq
            for _ in range(count)
        ]
    finally:
        await subscription.unsubscribe()


def lost_and_duplicated(seqs: list[int], last: int) -> tuple[int, int]:
    """(seqs 1..last missing from `seqs`, entries stored more than once)."""
    return len(set(range(1, last + 1)) - set(seqs)), len(seqs) - len(set(seqs))
