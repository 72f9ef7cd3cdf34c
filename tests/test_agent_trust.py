"""The agent's trust store (pinned root + persisted keyset, verified again on every
load) and its clock, which never goes back past the newest verified issued-at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.trust import KEYSET_FILE, AgentClock, TrustStore
from sentinel.envelope import SigningKey, TrustedKey
from sentinel.errors import ConfigError, FailedPrecondition, InvalidArgument
from sentinel.keyset import COMMAND, ROOT, Keyset, key_id_for, sign_keyset, trusted
from sentinel.v1 import signing_pb2

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def private_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


ROOT_KEY = private_key(100)
ROOT_SIGNER = SigningKey(key_id_for(ROOT_KEY.public_key(), ROOT), ROOT_KEY)
COMMAND_KEY = trusted(private_key(1).public_key(), COMMAND)
SECOND_COMMAND_KEY = trusted(private_key(2).public_key(), COMMAND)


def make(
    version: int,
    *,
    root: SigningKey = ROOT_SIGNER,
    key: TrustedKey = COMMAND_KEY,
    expires_at: datetime = T0 + 30 * DAY,
) -> Keyset:
    return sign_keyset(version, [key], root, issued_at=T0, expires_at=expires_at)


def write_root(path: Path, key: Ed25519PrivateKey = ROOT_KEY) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def root_path(tmp_path: Path) -> Path:
    return write_root(tmp_path / "root.pub")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "agent"
    directory.mkdir()
    return directory


# --- TrustStore ---------------------------------------------------------------------


def test_open_without_a_keyset_file_holds_version_zero(data_dir: Path, root_path: Path) -> None:
    store = TrustStore.open(data_dir, root_path)
    assert store.version == 0
    assert store.keyset is None
    assert store.keys(T0) == {}
    assert not (data_dir / KEYSET_FILE).exists()


def test_open_with_a_missing_root_key_is_a_config_error(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        TrustStore.open(data_dir, tmp_path / "absent.pub")
    assert caught.value.reason == "ROOT_KEY_MISSING"


def test_offer_persists_the_exact_envelope_and_reopen_returns_it(
    data_dir: Path, root_path: Path
) -> None:
    keyset = make(3)
    store = TrustStore.open(data_dir, root_path)
    assert store.offer(keyset.envelope, T0) is True
    assert store.version == 3
    assert set(store.keys(T0)) == {COMMAND_KEY.key_id}
    assert (data_dir / KEYSET_FILE).read_bytes() == keyset.envelope

    reopened = TrustStore.open(data_dir, root_path)
    assert reopened.version == 3
    assert reopened.keyset is not None
    assert reopened.keyset.envelope == keyset.envelope
    assert set(reopened.keys(T0)) == {COMMAND_KEY.key_id}


def test_keys_are_empty_once_the_held_keyset_expired(data_dir: Path, root_path: Path) -> None:
    store = TrustStore.open(data_dir, root_path)
    store.offer(make(1, expires_at=T0 + DAY).envelope, T0)
    assert set(store.keys(T0 + DAY - timedelta(seconds=1))) == {COMMAND_KEY.key_id}
    assert store.keys(T0 + DAY) == {}
    # An expired keyset on disk still opens (it is authentic); it just trusts nothing.
    reopened = TrustStore.open(data_dir, root_path)
    assert reopened.version == 1
    assert reopened.keys(T0 + 2 * DAY) == {}


def test_offer_of_the_same_keyset_is_a_no_op(data_dir: Path, root_path: Path) -> None:
    store = TrustStore.open(data_dir, root_path)
    store.offer(make(2).envelope, T0)
    held = store.keyset
    path = data_dir / KEYSET_FILE
    before = path.stat().st_ino
    assert store.offer(make(2).envelope, T0) is False
    assert store.keyset is held
    assert path.stat().st_ino == before  # not rewritten


def test_offer_of_a_newer_keyset_replaces_the_file(data_dir: Path, root_path: Path) -> None:
    store = TrustStore.open(data_dir, root_path)
    store.offer(make(1).envelope, T0)
    newer = make(2, key=SECOND_COMMAND_KEY)
    assert store.offer(newer.envelope, T0) is True
    assert set(store.keys(T0)) == {SECOND_COMMAND_KEY.key_id}
    assert (data_dir / KEYSET_FILE).read_bytes() == newer.envelope


def test_offer_of_an_older_version_raises_and_keeps_the_held_one(
    data_dir: Path, root_path: Path
) -> None:
    store = TrustStore.open(data_dir, root_path)
    store.offer(make(5).envelope, T0)
    held = store.keyset
    on_disk = (data_dir / KEYSET_FILE).read_bytes()
    with pytest.raises(FailedPrecondition) as caught:
        store.offer(make(4, key=SECOND_COMMAND_KEY).envelope, T0)
    assert caught.value.reason == "KEYSET_ROLLBACK"
    assert store.keyset is held
    assert store.version == 5
    assert set(store.keys(T0)) == {COMMAND_KEY.key_id}
    assert (data_dir / KEYSET_FILE).read_bytes() == on_disk


def test_offer_of_an_expired_keyset_raises_and_writes_nothing(
    data_dir: Path, root_path: Path
) -> None:
    store = TrustStore.open(data_dir, root_path)
    with pytest.raises(FailedPrecondition) as caught:
        store.offer(make(1, expires_at=T0).envelope, T0)
    assert caught.value.reason == "KEYSET_EXPIRED"
    assert store.version == 0
    assert not (data_dir / KEYSET_FILE).exists()


def test_offer_signed_by_another_root_raises_and_writes_nothing(
    data_dir: Path, root_path: Path
) -> None:
    other = private_key(101)
    forged = make(7, root=SigningKey(key_id_for(other.public_key(), ROOT), other))
    store = TrustStore.open(data_dir, root_path)
    with pytest.raises(InvalidArgument) as caught:
        store.offer(forged.envelope, T0)
    assert caught.value.reason == "KEYSET_INVALID"
    assert store.version == 0
    assert not (data_dir / KEYSET_FILE).exists()


def test_a_keyset_file_edited_on_disk_is_keyset_corrupt(data_dir: Path, root_path: Path) -> None:
    keyset = make(1)
    TrustStore.open(data_dir, root_path).offer(keyset.envelope, T0)
    path = data_dir / KEYSET_FILE
    original = path.read_bytes()
    # Every byte of the signed payload: any edit there is caught at open.
    payload = signing_pb2.SignedEnvelope.FromString(original).payload
    start = original.index(payload)
    for index in range(start, start + len(payload)):
        edited = bytearray(original)
        edited[index] ^= 0x01
        path.write_bytes(bytes(edited))
        with pytest.raises(ConfigError) as caught:
            TrustStore.open(data_dir, root_path)
        assert caught.value.reason == "KEYSET_CORRUPT", index
        assert "move it away" in str(caught.value)


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"\x0a\x05short"], ids=["empty", "garbage", "truncated"]
)
def test_an_unreadable_keyset_file_is_keyset_corrupt(
    data_dir: Path, root_path: Path, content: bytes
) -> None:
    (data_dir / KEYSET_FILE).write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        TrustStore.open(data_dir, root_path)
    assert caught.value.reason == "KEYSET_CORRUPT"


def test_a_keyset_from_another_root_on_disk_is_keyset_corrupt(
    data_dir: Path, root_path: Path, tmp_path: Path
) -> None:
    TrustStore.open(data_dir, root_path).offer(make(1).envelope, T0)
    other_root = write_root(tmp_path / "other.pub", private_key(101))
    with pytest.raises(ConfigError) as caught:
        TrustStore.open(data_dir, other_root)
    assert caught.value.reason == "KEYSET_CORRUPT"


def test_synced(data_dir: Path, root_path: Path) -> None:
    store = TrustStore.open(data_dir, root_path)
    assert store.synced is False  # nothing heard from the hub, nothing held
    store.hub_version = 0
    store.offer(make(3).envelope, T0)
    assert store.synced is False  # hub_version 0: not confirmed in this process
    for hub_version, expected in ((1, True), (2, True), (3, True), (4, False), (99, False)):
        store.hub_version = hub_version
        assert store.synced is expected, hub_version


def test_synced_without_a_keyset(data_dir: Path, root_path: Path) -> None:
    store = TrustStore.open(data_dir, root_path)
    store.hub_version = 1
    assert store.synced is False


# --- AgentClock ---------------------------------------------------------------------


class FakeSystem:
    """An injected system clock: set `now` to move it, back or forth."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_clock_without_history_is_the_system_clock(tmp_path: Path) -> None:
    system = FakeSystem(T0)
    clock = AgentClock(tmp_path / "clock", system)
    assert clock.now() == T0
    system.now = T0 - DAY
    assert clock.now() == T0 - DAY  # nothing observed: no floor
    assert not (tmp_path / "clock").exists()


def test_observe_ahead_of_the_system_clock_holds_even_when_it_goes_back(tmp_path: Path) -> None:
    system = FakeSystem(T0)
    clock = AgentClock(tmp_path / "clock", system)
    ahead = T0 + timedelta(hours=1)
    clock.observe(ahead)
    assert clock.now() == ahead
    system.now = T0 - 2 * DAY
    assert clock.now() == ahead
    system.now = T0 + 2 * DAY  # the system clock past the high-water mark wins again
    assert clock.now() == T0 + 2 * DAY


def test_observe_behind_the_system_clock_changes_nothing_visible(tmp_path: Path) -> None:
    system = FakeSystem(T0)
    clock = AgentClock(tmp_path / "clock", system)
    clock.observe(T0 - timedelta(minutes=1))
    assert clock.now() == T0
    system.now = T0 - DAY
    assert clock.now() == T0 - timedelta(minutes=1)


def test_the_high_water_mark_survives_a_new_clock_on_the_same_path(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    AgentClock(path, FakeSystem(T0)).observe(T0 + timedelta(hours=3))
    reborn = AgentClock(path, FakeSystem(T0 - 30 * DAY))
    assert reborn.now() == T0 + timedelta(hours=3)


def test_an_older_observation_does_not_lower_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    system = FakeSystem(T0 - DAY)
    clock = AgentClock(path, system)
    clock.observe(T0 + timedelta(hours=2))
    on_disk = path.read_bytes()
    clock.observe(T0 + timedelta(hours=1))
    clock.observe(T0 - 10 * DAY)
    assert clock.now() == T0 + timedelta(hours=2)
    assert path.read_bytes() == on_disk
    assert AgentClock(path, system).now() == T0 + timedelta(hours=2)


def test_a_newer_observation_raises_the_mark_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    system = FakeSystem(T0 - DAY)
    clock = AgentClock(path, system)
    clock.observe(T0)
    clock.observe(T0 + timedelta(minutes=5))
    assert clock.now() == T0 + timedelta(minutes=5)
    assert AgentClock(path, system).now() == T0 + timedelta(minutes=5)


def test_microseconds_survive_persistence(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    mark = T0 + timedelta(microseconds=123_457)
    AgentClock(path, FakeSystem(T0)).observe(mark)
    assert AgentClock(path, FakeSystem(T0)).now() == mark


@pytest.mark.parametrize(
    "content",
    [b"", b"yesterday", b"2026-13-45T99:99:99+00:00", b"\xff\xfe\x00"],
    ids=["empty", "text", "impossible-date", "not-utf8"],
)
def test_a_corrupt_clock_file_is_state_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clock"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        AgentClock(path, FakeSystem(T0))
    assert caught.value.reason == "STATE_CORRUPT"
    assert "move it away" in str(caught.value)


def test_a_naive_time_in_the_clock_file_is_state_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("2026-03-01T12:00:00")
    with pytest.raises(ConfigError) as caught:
        AgentClock(path, FakeSystem(T0)).now()
    assert caught.value.reason == "STATE_CORRUPT"
