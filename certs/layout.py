"""Where every file of a Sentinel certificate directory lives.

`CertLayout` is the one place that names these paths; nothing else joins file
names onto the directory. Names that come from callers (node ids, user names)
are validated before they become a path, so every path it returns lies inside
`directory` and no `../` can escape it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sentinel.identity import validate_node_id, validate_user_name

# The fixed NATS identities (user certificates): read-only events and telemetry, and
# everything (operators' tooling, tests). The hub creates any that are missing.
NATS_OBSERVER = "nats-observer"
NATS_ADMIN = "nats-admin"


@dataclass(frozen=True, slots=True)
class CertLayout:
    """The paths under one certificate directory (`sentinel certs init --dir DIR`)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def hub_cert(self) -> Path:
        return self.directory / "hub.crt"

    @property
    def hub_key(self) -> Path:
        return self.directory / "hub.key"

    @property
    def nats_server_cert(self) -> Path:
        return self.directory / "nats-server.crt"

    @property
    def nats_server_key(self) -> Path:
        return self.directory / "nats-server.key"

    @property
    def nodes_dir(self) -> Path:
        return self.directory / "nodes"

    @property
    def users_dir(self) -> Path:
        return self.directory / "users"

    @property
    def signing_dir(self) -> Path:
        return self.directory / "signing"

    @property
    def root_key(self) -> Path:
        return self.signing_dir / "root.key"

    @property
    def root_pub(self) -> Path:
        return self.signing_dir / "root.pub"

    @property
    def command_key(self) -> Path:
        return self.signing_dir / "command.key"

    @property
    def command_pub(self) -> Path:
        return self.signing_dir / "command.pub"

    @property
    def policy_key(self) -> Path:
        return self.signing_dir / "policy.key"

    @property
    def nats_callout_key(self) -> Path:
        return self.signing_dir / "nats-callout.key"

    @property
    def audit_key(self) -> Path:
        return self.signing_dir / "audit.key"

    def rotated_command_key(self, key_id: str) -> Path:
        """A command key made by a rotation; `key_id` comes from `key_id_for`, never a caller."""
        if not key_id.startswith("command-") or not key_id[8:].isalnum():
            raise ValueError(f"not a command key id: {key_id!r}")
        return self.signing_dir / f"{key_id}.key"

    def node_cert(self, node_id: str) -> Path:
        return self.nodes_dir / f"{validate_node_id(node_id)}.crt"

    def node_key(self, node_id: str) -> Path:
        return self.nodes_dir / f"{validate_node_id(node_id)}.key"

    def node_cert_next(self, node_id: str) -> Path:
        """A renewed certificate staged beside the one in use (see edge_agent.cert_files)."""
        return self.nodes_dir / f"{validate_node_id(node_id)}.crt.next"

    def node_key_next(self, node_id: str) -> Path:
        return self.nodes_dir / f"{validate_node_id(node_id)}.key.next"

    def user_cert(self, name: str) -> Path:
        return self.users_dir / f"{validate_user_name(name)}.crt"

    def user_key(self, name: str) -> Path:
        return self.users_dir / f"{validate_user_name(name)}.key"

    @property
    def init_files(self) -> tuple[Path, ...]:
        """Every file `init_ca` writes, in the order it writes them."""
        return (
            self.ca_key,
            self.ca_cert,
            self.hub_key,
            self.hub_cert,
            self.user_key("admin"),
            self.user_cert("admin"),
            *self.nats_files,
            self.root_key,
            self.root_pub,
            self.command_key,
            self.command_pub,
        )

    @property
    def nats_files(self) -> tuple[Path, ...]:
        """The embedded NATS server's certificate and the fixed NATS identities."""
        return (
            self.nats_server_key,
            self.nats_server_cert,
            self.user_key(NATS_OBSERVER),
            self.user_cert(NATS_OBSERVER),
            self.user_key(NATS_ADMIN),
            self.user_cert(NATS_ADMIN),
        )
