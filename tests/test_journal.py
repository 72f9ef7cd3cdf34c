"""The command journal: durable begin/finish lines keyed by command id, a torn last
line dropped, a damaged line anywhere else refused, expired finished entries
compacted away at open."""

from __future__ import annotations

import json
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.journal import JOURNAL_FILE, CommandJournal, Entry
from sentinel.errors import ConfigError

NOW = 1_780_000_000.0
LATER = NOW + 3600.0
EARLIER = NOW - 3600.0


def line(command_id: str, seq: int, not_after: float, result: str | None = None) -> bytes:
    """One journal line as the format documents it: `<crc32 hex> <json>`."""
    body: dict[str, object] = {"id": command_id, "seq": seq, "not_after": not_after}
    if result is not None:
        body["result"] = result
    encoded = json.dumps(body, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(encoded), encoded)


def journal_lines(data_dir: Path) -> list[bytes]:
    return (data_dir / JOURNAL_FILE).read_bytes().splitlines(keepends=True)


def reopen(journal: CommandJournal, data_dir: Path, now_s: float = NOW) -> CommandJournal:
    journal.close()
    return CommandJournal.open(data_dir, now_s)


# --- begin / finish / lookup --------------------------------------------------------


def test_an_empty_journal(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "dir"
    journal = CommandJournal.open(data_dir, NOW)  # creates the directory
    try:
        assert len(journal) == 0
        assert journal.lookup("anything") is None
        assert journal.unfinished() == []
        assert (data_dir / JOURNAL_FILE).read_bytes() == b""
    finally:
        journal.close()


def test_begin_then_finish_then_lookup(tmp_path: Path) -> None:
    journal = CommandJournal.open(tmp_path, NOW)
    journal.begin("c1", 7, LATER)
    begun = journal.lookup("c1")
    assert begun == Entry("c1", 7, LATER, None)
    assert begun is not None and not begun.finished
    assert [e.command_id for e in journal.unfinished()] == ["c1"]

    journal.finish("c1", 7, LATER, b"result-bytes")
    entry = journal.lookup("c1")
    assert entry == Entry("c1", 7, LATER, b"result-bytes")
    assert entry is not None and entry.finished
    assert journal.unfinished() == []
    assert len(journal) == 1
    journal.close()


def test_each_step_is_on_disk_before_it_returns(tmp_path: Path) -> None:
    journal = CommandJournal.open(tmp_path, NOW)
    journal.begin("c1", 1, LATER)
    assert len(journal_lines(tmp_path)) == 1
    journal.finish("c1", 1, LATER, b"r")
    assert len(journal_lines(tmp_path)) == 2
    journal.finish("c2", 2, LATER, b"refused")  # a refusal: its only line
    assert len(journal_lines(tmp_path)) == 3
    journal.close()


def test_reopen_keeps_every_entry(tmp_path: Path) -> None:
    journal = CommandJournal.open(tmp_path, NOW)
    journal.begin("running", 1, LATER)
    journal.begin("done", 2, LATER)
    journal.finish("done", 2, LATER, b"\x00\n\xff binary result")
    journal.finish("refused", 3, LATER, b"")  # an empty result is still a result
    journal.begin('odd "id"\nwith newline', 4, LATER)
    journal = reopen(journal, tmp_path)
    try:
        assert len(journal) == 4
        assert journal.lookup("running") == Entry("running", 1, LATER, None)
        assert journal.lookup("done") == Entry("done", 2, LATER, b"\x00\n\xff binary result")
        refused = journal.lookup("refused")
        assert refused == Entry("refused", 3, LATER, b"")
        assert refused is not None and refused.finished
        assert journal.lookup('odd "id"\nwith newline') is not None
        assert sorted(e.command_id for e in journal.unfinished()) == [
            'odd "id"\nwith newline',
            "running",
        ]
    finally:
        journal.close()


def test_unfinished_after_reopen_lists_begun_but_not_finished(tmp_path: Path) -> None:
    journal = CommandJournal.open(tmp_path, NOW)
    for n in range(5):
        journal.begin(f"c{n}", n, LATER)
    for n in (0, 2, 4):
        journal.finish(f"c{n}", n, LATER, b"ok")
    journal = reopen(journal, tmp_path)
    try:
        unfinished = journal.unfinished()
        assert sorted(e.command_id for e in unfinished) == ["c1", "c3"]
        assert all(e.result is None and not e.finished for e in unfinished)
        assert {e.command_id: e.stream_seq for e in unfinished} == {"c1": 1, "c3": 3}
    finally:
        journal.close()


def test_appends_after_reopen_are_kept(tmp_path: Path) -> None:
    journal = CommandJournal.open(tmp_path, NOW)
    journal.begin("a", 1, LATER)
    journal = reopen(journal, tmp_path)
    journal.finish("a", 1, LATER, b"ra")
    journal.begin("b", 2, LATER)
    journal = reopen(journal, tmp_path)
    try:
        assert journal.lookup("a") == Entry("a", 1, LATER, b"ra")
        assert journal.lookup("b") == Entry("b", 2, LATER, None)
    finally:
        journal.close()


def test_reads_the_documented_line_format(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(
        line("x", 3, LATER) + line("x", 3, LATER, "cmVzdWx0") + line("y", 4, LATER)
    )
    journal = CommandJournal.open(tmp_path, NOW)
    try:
        assert journal.lookup("x") == Entry("x", 3, LATER, b"result")
        assert journal.lookup("y") == Entry("y", 4, LATER, None)
    finally:
        journal.close()


# --- torn and damaged lines ---------------------------------------------------------


@pytest.mark.parametrize(
    "torn",
    [
        b'1a2b3c4d {"id":"half',
        b"0",
        line("complete-but-unterminated", 9, LATER).rstrip(b"\n"),
    ],
    ids=["half-line", "one-byte", "no-newline"],
)
def test_a_torn_last_line_is_dropped_and_the_file_reopens_cleanly(
    tmp_path: Path, torn: bytes
) -> None:
    journal = CommandJournal.open(tmp_path, NOW)
    journal.begin("a", 1, LATER)
    journal.finish("a", 1, LATER, b"ra")
    journal.begin("b", 2, LATER)
    journal.close()
    with (tmp_path / JOURNAL_FILE).open("ab") as handle:
        handle.write(torn)

    journal = CommandJournal.open(tmp_path, NOW)
    assert len(journal) == 2
    assert journal.lookup("a") == Entry("a", 1, LATER, b"ra")
    assert journal.lookup("b") == Entry("b", 2, LATER, None)
    assert journal.lookup("complete-but-unterminated") is None
    assert (tmp_path / JOURNAL_FILE).read_bytes().endswith(b"\n")
    # A new line lands on its own, not glued to the torn fragment.
    journal.begin("c", 3, LATER)
    journal = reopen(journal, tmp_path)
    try:
        assert sorted(e.command_id for e in journal.unfinished()) == ["b", "c"]
        assert len(journal) == 3
    finally:
        journal.close()


def write_three_lines(data_dir: Path) -> bytes:
    journal = CommandJournal.open(data_dir, NOW)
    journal.begin("a", 1, LATER)
    journal.finish("a", 1, LATER, b"ra")
    journal.begin("b", 2, LATER)
    journal.close()
    return (data_dir / JOURNAL_FILE).read_bytes()


@pytest.mark.parametrize("line_number", [1, 2, 3])
def test_a_damaged_complete_line_is_journal_corrupt(tmp_path: Path, line_number: int) -> None:
    original = write_three_lines(tmp_path)
    lines = original.splitlines(keepends=True)
    assert len(lines) == 3
    damaged = bytearray(lines[line_number - 1])
    damaged[len(damaged) // 2] ^= 0x04  # inside the JSON body
    lines[line_number - 1] = bytes(damaged)
    path = tmp_path / JOURNAL_FILE
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(ConfigError) as caught:
        CommandJournal.open(tmp_path, NOW)
    assert caught.value.reason == "JOURNAL_CORRUPT"
    assert f"line {line_number} is damaged" in str(caught.value)
    assert path.read_bytes() == before  # a refused open rewrites nothing


def test_no_single_bit_flip_in_a_middle_line_is_read_as_other_content(tmp_path: Path) -> None:
    """Every flip in the body is caught by the CRC. The only flips accepted are those
    that keep the CRC's value (a hex digit's case: `a` and `A` read the same), and
    then the entries are exactly the original ones."""
    original = write_three_lines(tmp_path)
    lines = original.splitlines(keepends=True)
    start, end = len(lines[0]), len(lines[0]) + len(lines[1]) - 1  # not its newline
    crc_end = start + 8
    path = tmp_path / JOURNAL_FILE
    expected = {"a": Entry("a", 1, LATER, b"ra"), "b": Entry("b", 2, LATER, None)}
    accepted = 0
    for index in range(start, end):
        for bit in range(8):
            damaged = bytearray(original)
            damaged[index] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            try:
                journal = CommandJournal.open(tmp_path, NOW)
            except ConfigError as error:
                assert error.reason == "JOURNAL_CORRUPT", (index, bit)
                continue
            journal.close()
            accepted += 1
            assert index < crc_end, (index, bit)
            assert int(bytes(damaged[start:crc_end]), 16) == int(original[start:crc_end], 16)
            assert {k: journal.lookup(k) for k in expected} == expected
            assert len(journal) == 2
    assert accepted < 8  # at most one case flip per CRC digit


def test_a_blank_line_in_the_middle_is_journal_corrupt(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(line("a", 1, LATER) + b"\n" + line("b", 2, LATER))
    with pytest.raises(ConfigError) as caught:
        CommandJournal.open(tmp_path, NOW)
    assert caught.value.reason == "JOURNAL_CORRUPT"
    assert "line 2" in str(caught.value)


def test_a_line_with_a_valid_crc_but_the_wrong_shape_is_journal_corrupt(tmp_path: Path) -> None:
    body = b'{"id":"a"}'  # no seq, no not_after
    (tmp_path / JOURNAL_FILE).write_bytes(b"%08x %s\n" % (zlib.crc32(body), body))
    with pytest.raises(ConfigError) as caught:
        CommandJournal.open(tmp_path, NOW)
    assert caught.value.reason == "JOURNAL_CORRUPT"


# --- compaction ---------------------------------------------------------------------


def test_open_drops_expired_finished_entries_and_keeps_unfinished_ones(tmp_path: Path) -> None:
    journal = CommandJournal.open(tmp_path, EARLIER - 10)
    journal.begin("unfinished-expired", 1, EARLIER)
    journal.finish("finished-expired", 2, EARLIER, b"r2")
    journal.finish("finished-at-now", 3, NOW, b"r3")  # not_after == now: expired
    journal.finish("finished-live", 4, LATER, b"r4")
    journal.begin("unfinished-live", 5, LATER)
    journal.close()

    journal = CommandJournal.open(tmp_path, NOW)
    try:
        assert journal.lookup("finished-expired") is None
        assert journal.lookup("finished-at-now") is None
        assert journal.lookup("finished-live") == Entry("finished-live", 4, LATER, b"r4")
        # Begun and never finished: must still be reported INTERRUPTED, however old.
        assert journal.lookup("unfinished-expired") == Entry("unfinished-expired", 1, EARLIER)
        assert sorted(e.command_id for e in journal.unfinished()) == [
            "unfinished-expired",
            "unfinished-live",
        ]
        assert len(journal) == 3
    finally:
        journal.close()
    # The file was rewritten compactly: one line per kept entry.
    assert len(journal_lines(tmp_path)) == 3


def test_compaction_merges_begin_and_finish_into_one_line(tmp_path: Path) -> None:
    journal = CommandJournal.open(tmp_path, NOW)
    journal.begin("a", 1, LATER)
    journal.finish("a", 1, LATER, b"ra")
    journal = reopen(journal, tmp_path)
    journal.close()
    assert len(journal_lines(tmp_path)) == 1
    reopened = CommandJournal.open(tmp_path, NOW)
    try:
        assert reopened.lookup("a") == Entry("a", 1, LATER, b"ra")
    finally:
        reopened.close()


def test_many_entries_reopen_fast(tmp_path: Path) -> None:
    count = 5000
    lines = []
    for n in range(count):
        not_after = EARLIER if n % 4 == 0 else LATER
        lines.append(line(f"cmd-{n:05d}", n, not_after))
        if n % 2 == 0:
            lines.append(line(f"cmd-{n:05d}", n, not_after, "b2s="))
    (tmp_path / JOURNAL_FILE).write_bytes(b"".join(lines))

    started = time.perf_counter()
    journal = CommandJournal.open(tmp_path, NOW)
    elapsed = time.perf_counter() - started
    try:
        # Finished and expired: every n divisible by 4 (finished needs n even).
        assert len(journal) == count - count // 4
        assert len(journal.unfinished()) == count // 2
        assert journal.lookup("cmd-00002") == Entry("cmd-00002", 2, LATER, b"ok")
        assert journal.lookup("cmd-00004") is None
    finally:
        journal.close()
    assert elapsed < 1.0, f"reopening {count} entries took {elapsed:.2f}s"


async def test_the_agent_compacts_its_journal_by_its_clock_floor_never_the_system_clock(
    tmp_path: Path,
) -> None:
    """A system clock that is far ahead at boot must not make the journal forget a command
    that JetStream can still redeliver once the clock is corrected (it would run twice)."""
    from edge_agent.app import CLOCK_FILE, CommandParts
    from edge_agent.settings import AgentSettings, LinkSettings

    data_dir = tmp_path / "agent"
    floor = datetime(2026, 1, 1, tzinfo=UTC)
    journal = CommandJournal.open(data_dir, 0.0)
    journal.finish("cmd-1", 7, (floor + timedelta(minutes=10)).timestamp(), b"result")
    journal.close()
    (data_dir / CLOCK_FILE).write_text(floor.isoformat())
    root = Ed25519PrivateKey.generate().public_key()
    (tmp_path / "signing").mkdir()
    (tmp_path / "signing" / "root.pub").write_bytes(
        root.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings = AgentSettings(certs_dir=tmp_path, data_dir=data_dir, link=LinkSettings("unused:1"))
    parts = await CommandParts.open(settings, "node-a", None)  # the real clock is months later
    entry = parts.journal.lookup("cmd-1")
    assert entry is not None and entry.result == b"result"
    parts.journal.close()
