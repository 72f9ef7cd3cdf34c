"""Seq-by-seq verification shared by the soak runs: what a node's batches look like in
`sentinel.telemetry.<node>`, and what was lost or stored twice."""

from __future__ import annotations

from nats.js import JetStreamContext

from sentinel import subjects
from sentinel.v1 import telemetry_pb2


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
