"""`sentinel audit ls|export|verify` against a real hub: paging and filters, an export
that verifies offline against the root key, and tampered copies failing on the exact line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.app import Hub
from tests.conftest import Pki
from tests.test_cli_commands import ERROR_LINE, Cli

ADMIN = "spiffe://sentinel.local/user/admin"


def config(pki: Pki, hub: Hub, path: Path, user: str) -> Path:
    """A client config in the dev.json format, `certs_dir` included (for the root key)."""
    layout = pki.layout
    path.write_text(
        json.dumps(
            {
                "hub_address": hub.address,
                "certs_dir": str(pki.directory),
                "ca_cert": str(layout.ca_cert),
                "client_cert": str(layout.user_cert(user)),
                "client_key": str(layout.user_key(user)),
            }
        )
    )
    return path


@pytest.fixture
def cli(hub: Hub, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    users = ("admin", "operator")
    return Cli(capsys, {u: config(pki, hub, tmp_path / f"{u}.json", u) for u in users})


async def test_ls_pages_and_filters(cli: Cli, hub: Hub) -> None:
    rotated = await cli("keys", "rotate", user="admin")
    assert rotated.code == 0, rotated.err
    for n in range(4):
        await hub.audit.append("test.step", actor="test", target=f"t-{n}")

    listed = await cli("audit", "ls", "-o", "json", user="admin")
    assert listed.code == 0, listed.err
    records = listed.json()
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert (records[0]["action"], records[0]["actor"], records[0]["outcome"]) == (
        "rpc",
        ADMIN,
        "OK",
    )
    assert records[0]["details"]["method"] == "/sentinel.v1.KeyService/RotateCommandKey"

    window = await cli("audit", "ls", "--from", "3", "--limit", "2", "-o", "json", user="admin")
    assert [r["seq"] for r in window.json()] == [3, 4]
    steps = await cli("audit", "ls", "--action", "test.", "-o", "json", user="admin")
    assert [r["target"] for r in steps.json()] == ["t-0", "t-1", "t-2", "t-3"]
    mine = await cli("audit", "ls", "--actor", ADMIN, "-o", "json", user="admin")
    assert [r["seq"] for r in mine.json()] == [1]

    table = await cli("audit", "ls", "--limit", "1", user="admin")
    header, row = table.lines
    assert header.split() == ["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REASON"]
    assert row.split()[0] == "1" and row.split()[2:4] == [ADMIN, "rpc"]

    denied = await cli("audit", "ls", user="operator")
    assert denied.code == 1 and ERROR_LINE.fullmatch(denied.err)
    assert "PERMISSION_DENIED (ROLE_TOO_LOW)" in denied.err


async def test_export_verifies_and_tampered_copies_fail_on_the_exact_line(
    cli: Cli, hub: Hub, tmp_path: Path
) -> None:
    for n in range(6):
        await hub.audit.append("test.step", actor="test", details={"n": n})
    await hub.audit.checkpoint()
    exported = tmp_path / "audit.jsonl"
    done = await cli("audit", "export", str(exported), user="admin")
    assert done.code == 0, done.err
    assert done.out == f"exported 7 records and the seal to {exported}\n"
    lines = exported.read_bytes().splitlines()
    assert len(lines) == 8 and lines[-1].startswith(b'{"seal":')
    assert [json.loads(line)["seq"] for line in lines[:-1]] == list(range(1, 8))

    offline = await cli("audit", "verify", "--file", str(exported), user="admin")
    assert offline.code == 0, offline.out + offline.err
    head = json.loads(lines[6])["hash"]
    assert offline.out.startswith(
        f"audit log verified: 7 records, seq 1..7, head {head[:12]}…, 1 checkpoints, "
        "sealed by audit-"
    )
    streamed = await cli("audit", "verify", user="admin")
    assert (streamed.code, streamed.out) == (0, offline.out)

    edited = json.loads(lines[2])
    edited["details"]["n"] = 99
    tampered = tmp_path / "edited.jsonl"
    tampered.write_bytes(
        b"\n".join([*lines[:2], json.dumps(edited, sort_keys=True, separators=(",", ":")).encode(),
                    *lines[3:]]) + b"\n"
    )  # fmt: skip
    failed = await cli("audit", "verify", "--file", str(tampered), user="admin")
    assert (failed.code, failed.out) == (
        1,
        "audit log INVALID at seq 3 (line 3): hash mismatch (record edited)\n",
    )

    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"\n".join(lines[:5]) + b"\n")
    truncated = await cli("audit", "verify", "--file", str(cut), user="admin")
    assert (truncated.code, truncated.out) == (
        1,
        "audit log INVALID at seq 6 (line 6): the export ends without its seal: "
        "truncated after seq 5\n",
    )

    swapped = tmp_path / "swapped.jsonl"
    swapped.write_bytes(b"\n".join([lines[0], lines[3], lines[2], lines[1], *lines[4:]]) + b"\n")
    reordered = await cli("audit", "verify", "--file", str(swapped), user="admin")
    assert reordered.code == 1
    assert reordered.out.startswith("audit log INVALID at seq 2 (line 2): seq 2 missing")

    missing = await cli("audit", "verify", "--file", str(tmp_path / "nope"), user="admin")
    assert missing.code == 1 and missing.err.startswith("sentinel: error: cannot read ")
