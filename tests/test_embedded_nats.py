"""The embedded nats-server: its durability setting (fsync before every PubAck by default)
and an upgrade from a store made before NATS had accounts."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

import certs
from cli.main import main
from hub.app import Hub
from hub.embedded_nats import EmbeddedNats, NatsTls
from sentinel import nats_tls, subjects
from tests.conftest import Pki, hub_settings, nats_admin


@pytest.mark.parametrize(("sync", "expected"), [(None, "always"), ("2m", "2m")])
async def test_embedded_jetstream_sync_setting(
    tmp_path: Path, sync: str | None, expected: str
) -> None:
    server = await (
        EmbeddedNats.start(tmp_path) if sync is None else EmbeddedNats.start(tmp_path, sync=sync)
    )
    try:
        config = (tmp_path / "nats-server.conf").read_text()
        assert f"sync_interval: {expected}\n" in config
        nc = await nats.connect(server.url)
        info = await nc.jetstream().account_info()
        assert info.limits is not None  # JetStream answers with this configuration
        await nc.close()
    finally:
        await server.stop()


def test_a_bad_sync_setting_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["hub", "--certs", str(tmp_path), "--listen", "127.0.0.1:0"]
    code = main([*argv, "--data-dir", str(tmp_path / "d"), "--nats-sync", "soon"])
    err = capsys.readouterr().err
    assert code != 0
    assert err == (
        'sentinel: error: invalid duration "soon": use Go syntax such as 90s, 15m or 2h\n'
    )
    assert not (tmp_path / "d").exists()  # nothing was started


async def test_an_upgrade_keeps_what_the_global_account_stored(pki: Pki, tmp_path: Path) -> None:
    # A store from before the accounts: every stream under NATS's global account.
    layout = pki.layout
    tls = NatsTls(layout.nats_server_cert, layout.nats_server_key, layout.ca_cert)
    old = await EmbeddedNats.start(tmp_path, tls=tls)
    try:
        nc = await nats_tls.connect(old.url, pki.user(certs.NATS_ADMIN))
        js = nc.jetstream()
        await js.add_stream(name=subjects.EVENTS_STREAM, subjects=[subjects.EVENTS_ALL])
        await js.publish(subjects.event_subject("node", "test", "node-a"), b"kept")
        await nc.close()
    finally:
        await old.stop()
    assert (tmp_path / "nats" / "jetstream" / "$G").is_dir()
    hub = await Hub.start(hub_settings(pki, tmp_path))
    try:
        # Restored by the server itself, not made anew by the hub over the old files.
        assert "Error recreating stream" not in (tmp_path / "nats-server.log").read_text()
        admin = await nats_admin(hub)
        message = await admin.jetstream().get_msg(subjects.EVENTS_STREAM, 1)
        assert message.data == b"kept"
        await admin.close()
    finally:
        await hub.stop()
    assert not (tmp_path / "nats" / "jetstream" / "$G").exists()
