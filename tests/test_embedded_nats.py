"""The embedded nats-server: its durability setting (fsync before every PubAck by default)
and its locked-down mode (mutual TLS, users mapped by certificate, reloaded in place)."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

import certs
from cli.main import main
from hub.embedded_nats import EmbeddedNats, NatsTls
from hub.nats_access import authorization
from sentinel import nats_tls
from sentinel.errors import Unavailable
from tests.conftest import Pki


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


async def test_a_reload_the_server_refuses_is_an_error_and_changes_nothing(
    pki: Pki, tmp_path: Path
) -> None:
    layout = pki.layout
    server = await EmbeddedNats.start(
        tmp_path,
        tls=NatsTls(layout.nats_server_cert, layout.nats_server_key, layout.ca_cert),
        authorization=authorization("sentinel.local", ()),
    )
    try:
        assert server.url.startswith("tls://127.0.0.1:")
        await server.reload(authorization("sentinel.local", ["node-a"]))
        assert server.reloads == 1
        with pytest.raises(Unavailable) as caught:
            await server.reload("authorization { users = [ {user: } ] }\n")
        assert caught.value.reason == "NATS_RELOAD_FAILED"
        assert server.process.returncode is None
        nc = await nats_tls.connect(server.url, pki.user(certs.NATS_ADMIN))
        await nc.jetstream().account_info()  # still up, with the rights it had
        await nc.close()
    finally:
        await server.stop()
