"""The embedded nats-server's durability setting: fsync before every PubAck by default."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from cli.main import main
from hub.embedded_nats import EmbeddedNats


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
