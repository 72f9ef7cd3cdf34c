"""The agent's verifier, end to end over real pieces: envelopes sealed with real keys,
a root-signed keyset held by a TrustStore on disk, and an AgentClock whose system
time the test sets. Each refusal is checked for its code, message and (once the
signature verified) the command id it carries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.trust import AgentClock, TrustStore
from edge_agent.verifier import DEFAULT_SKEW, VerifiedCommand, Verifier
from sentinel.durations import to_timestamp
from sentinel.envelope import SigningKey, seal
from sentinel.keyset import COMMAND, POLICY, ROOT, key_id_for, sign_keyset, trusted
from sentinel.refusals import CommandRefused, Reason
from sentinel.v1 import command_pb2, signing_pb2

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NODE = "node-a"
COMMAND_ID = str(uuid.UUID(int=0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0))
PAYLOAD_TYPE = "sentinel.v1.CommandPayload"


def private_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def signing_key(seed: int, purpose: signing_pb2.KeyPurpose = COMMAND) -> SigningKey:
    key = private_key(seed)
    return SigningKey(key_id_for(key.public_key(), purpose), key)


ROOT_SIGNER = signing_key(100, ROOT)
COMMAND_SIGNER = signing_key(1)
POLICY_SIGNER = signing_key(3, POLICY)
STRANGER = signing_key(9)  # a command key the keyset does not hold


class FakeSystem:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Agent:
    tmp_path: Path
    trust: TrustStore
    system: FakeSystem
    clock: AgentClock

    def verifier(self, skew: timedelta = DEFAULT_SKEW, **kwargs: int) -> Verifier:
        return Verifier(NODE, self.trust, self.clock, skew=skew, **kwargs)

    def restart(self) -> None:
        """A new process: the trust store and clock read back from disk."""
        self.trust = TrustStore.open(self.tmp_path / "agent", self.tmp_path / "root.pub")
        self.clock = AgentClock(self.tmp_path / "agent" / "clock", self.system)


def make_agent(tmp_path: Path, keyset_expires_at: datetime = T0 + 30 * DAY) -> Agent:
    root_path = tmp_path / "root.pub"
    root_path.write_bytes(
        ROOT_SIGNER.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    keyset = sign_keyset(
        1,
        [
            trusted(COMMAND_SIGNER.private_key.public_key(), COMMAND),
            trusted(POLICY_SIGNER.private_key.public_key(), POLICY),
        ],
        ROOT_SIGNER,
        issued_at=T0 - DAY,
        expires_at=keyset_expires_at,
    )
    store = TrustStore.open(data_dir, root_path)
    assert store.offer(keyset.envelope, T0 - DAY)
    system = FakeSystem(T0)
    return Agent(tmp_path, store, system, AgentClock(data_dir / "clock", system))


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return make_agent(tmp_path)


def payload(
    *,
    command_id: str = COMMAND_ID,
    issued_at: datetime | None = T0,
    not_after: datetime | None = T0 + timedelta(minutes=10),
    audience: str = NODE,
) -> command_pb2.CommandPayload:
    message = command_pb2.CommandPayload(
        command_id=command_id,
        issuer="user:operator",
        audience=audience,
        action="restart_unit",
        mode=command_pb2.COMMAND_MODE_EXECUTE,
    )
    message.parameters["unit"].string_value = "trainer.service"
    if issued_at is not None:
        message.issued_at.CopyFrom(to_timestamp(issued_at))
    if not_after is not None:
        message.not_after.CopyFrom(to_timestamp(not_after))
    return message


def envelope(
    message: command_pb2.CommandPayload | bytes, signer: SigningKey = COMMAND_SIGNER
) -> bytes:
    data = message if isinstance(message, bytes) else message.SerializeToString()
    return seal(data, [signer], PAYLOAD_TYPE)


def refused(verifier: Verifier, data: bytes, code: Reason) -> CommandRefused:
    with pytest.raises(CommandRefused) as caught:
        verifier.verify(data)
    assert caught.value.code is code, caught.value
    assert caught.value.reason == code.value
    return caught.value


# --- accepted -----------------------------------------------------------------------


def test_a_valid_command_is_verified(agent: Agent) -> None:
    sent = payload()
    verified = agent.verifier().verify(envelope(sent))
    assert isinstance(verified, VerifiedCommand)
    assert verified.payload == sent
    assert verified.issued_at == T0
    assert verified.not_after == T0 + timedelta(minutes=10)
    assert verified.payload.parameters["unit"].string_value == "trainer.service"


def test_a_verified_command_raises_the_agent_clock(agent: Agent) -> None:
    issued_at = T0 + timedelta(minutes=2)  # within the skew
    agent.verifier().verify(envelope(payload(issued_at=issued_at)))
    agent.system.now = T0 - DAY
    assert agent.clock.now() == issued_at


def test_payload_type_is_not_trusted_to_pick_a_decoder(agent: Agent) -> None:
    data = seal(payload().SerializeToString(), [COMMAND_SIGNER], "sentinel.v1.Keyset")
    assert agent.verifier().verify(data).payload.command_id == COMMAND_ID


# --- refused before the signature: no command id ------------------------------------


def test_an_oversized_envelope_is_malformed(agent: Agent) -> None:
    data = envelope(payload())
    error = refused(agent.verifier(max_bytes=len(data) - 1), data, Reason.MALFORMED)
    assert "exceeds the" in str(error)
    assert "command_id" not in error.details


def test_garbage_is_malformed(agent: Agent) -> None:
    error = refused(agent.verifier(), b"\xff\xff\xff\xff", Reason.MALFORMED)
    assert "command_id" not in error.details


def test_a_command_key_outside_the_keyset_is_unknown_key(agent: Agent) -> None:
    error = refused(agent.verifier(), envelope(payload(), STRANGER), Reason.UNKNOWN_KEY)
    assert STRANGER.key_id in str(error)
    assert "command_id" not in error.details


def test_a_policy_key_in_the_keyset_cannot_sign_commands(agent: Agent) -> None:
    error = refused(agent.verifier(), envelope(payload(), POLICY_SIGNER), Reason.UNKNOWN_KEY)
    assert "command_id" not in error.details


def test_a_forged_signature_under_the_command_key_id_is_bad_signature(agent: Agent) -> None:
    forger = SigningKey(COMMAND_SIGNER.key_id, private_key(42))
    error = refused(agent.verifier(), envelope(payload(), forger), Reason.BAD_SIGNATURE)
    assert error.details == {"key_id": COMMAND_SIGNER.key_id}


def test_a_tampered_payload_is_bad_signature(agent: Agent) -> None:
    genuine = envelope(payload(audience="node-b"))
    tampered = genuine.replace(b"node-b", b"node-a")
    assert tampered != genuine
    error = refused(agent.verifier(), tampered, Reason.BAD_SIGNATURE)
    assert "command_id" not in error.details


def test_the_signature_is_checked_before_the_payload_is_decoded(agent: Agent) -> None:
    # Undecodable, expired or misaddressed, but unsigned by a trusted key: the refusal
    # is about the signature, since nothing else in it can be believed.
    verifier = agent.verifier()
    refused(verifier, envelope(b"\xff\xff\xff", STRANGER), Reason.UNKNOWN_KEY)
    expired = payload(not_after=T0 - DAY)
    refused(verifier, envelope(expired, STRANGER), Reason.UNKNOWN_KEY)
    forger = SigningKey(COMMAND_SIGNER.key_id, private_key(42))
    refused(verifier, envelope(payload(audience="node-z"), forger), Reason.BAD_SIGNATURE)


# --- MALFORMED payloads under a valid signature -------------------------------------


def test_signed_bytes_that_do_not_decode_are_malformed(agent: Agent) -> None:
    error = refused(agent.verifier(), envelope(b"\xff\xff\xff"), Reason.MALFORMED)
    assert "payload does not decode" in str(error)
    assert "command_id" not in error.details


@pytest.mark.parametrize("command_id", ["", "not-a-uuid", "1234", "../../etc/passwd"])
def test_a_non_uuid_command_id_is_malformed(agent: Agent, command_id: str) -> None:
    error = refused(agent.verifier(), envelope(payload(command_id=command_id)), Reason.MALFORMED)
    assert str(error) == "payload has no valid command id"
    assert "command_id" not in error.details  # an invalid id is not reported as one


@pytest.mark.parametrize(
    ("has_issued_at", "has_not_after"), [(True, False), (False, True), (False, False)]
)
def test_a_payload_without_its_times_is_malformed(
    agent: Agent, has_issued_at: bool, has_not_after: bool
) -> None:
    message = payload(
        issued_at=T0 if has_issued_at else None,
        not_after=T0 + DAY if has_not_after else None,
    )
    error = refused(agent.verifier(), envelope(message), Reason.MALFORMED)
    assert str(error) == "payload lacks issued_at or not_after"
    assert error.details["command_id"] == COMMAND_ID


def test_a_signed_payload_with_an_out_of_range_time_is_malformed(agent: Agent) -> None:
    message = payload()
    message.not_after.seconds = 10**12  # about year 33658
    error = refused(agent.verifier(), envelope(message), Reason.MALFORMED)
    assert error.details["command_id"] == COMMAND_ID


# --- time -----------------------------------------------------------------------------


def test_a_command_past_its_not_after_is_expired(agent: Agent) -> None:
    not_after = T0 - timedelta(seconds=1)
    error = refused(
        agent.verifier(),
        envelope(payload(issued_at=T0 - timedelta(minutes=10), not_after=not_after)),
        Reason.EXPIRED,
    )
    assert str(error) == f"expired at {not_after.isoformat()} (agent clock {T0.isoformat()})"
    assert error.details["command_id"] == COMMAND_ID


def test_not_after_equal_to_now_is_expired(agent: Agent) -> None:
    verifier = agent.verifier()
    refused(verifier, envelope(payload(issued_at=T0 - DAY, not_after=T0)), Reason.EXPIRED)
    just_valid = payload(issued_at=T0 - DAY, not_after=T0 + timedelta(microseconds=1))
    assert verifier.verify(envelope(just_valid)).not_after > T0


def test_a_command_issued_beyond_the_skew_is_not_yet_valid(agent: Agent) -> None:
    issued_at = T0 + DEFAULT_SKEW + timedelta(microseconds=1)
    error = refused(
        agent.verifier(),
        envelope(payload(issued_at=issued_at, not_after=issued_at + timedelta(minutes=10))),
        Reason.NOT_YET_VALID,
    )
    assert f"issued at {issued_at.isoformat()}" in str(error)
    assert "beyond the allowed skew" in str(error)
    assert T0.isoformat() in str(error)
    assert error.details["command_id"] == COMMAND_ID


def test_a_refused_future_command_does_not_move_the_clock(agent: Agent) -> None:
    far = T0 + 10 * DAY
    refused(
        agent.verifier(),
        envelope(payload(issued_at=far, not_after=far + DAY)),
        Reason.NOT_YET_VALID,
    )
    agent.system.now = T0 - DAY
    assert agent.clock.now() == T0 - DAY
    agent.restart()
    assert agent.clock.now() == T0 - DAY


def test_a_command_issued_exactly_at_the_skew_is_accepted(agent: Agent) -> None:
    issued_at = T0 + DEFAULT_SKEW
    verified = agent.verifier().verify(
        envelope(payload(issued_at=issued_at, not_after=issued_at + timedelta(minutes=1)))
    )
    assert verified.issued_at == issued_at


def test_the_skew_is_configurable(agent: Agent) -> None:
    issued_at = T0 + timedelta(minutes=30)
    data = envelope(payload(issued_at=issued_at, not_after=issued_at + timedelta(minutes=10)))
    refused(agent.verifier(skew=timedelta(minutes=29)), data, Reason.NOT_YET_VALID)
    assert agent.verifier(skew=timedelta(minutes=30)).verify(data).issued_at == issued_at


def test_the_agent_clock_never_goes_back(agent: Agent) -> None:
    verifier = agent.verifier(skew=timedelta(hours=2))
    ahead = T0 + timedelta(hours=1)
    verifier.verify(envelope(payload(issued_at=ahead, not_after=ahead + timedelta(minutes=10))))

    agent.system.now = T0 - 2 * DAY  # someone turns the system clock back two days
    old = payload(
        command_id=str(uuid.UUID(int=2)),
        issued_at=T0 - 2 * DAY,
        not_after=T0 + timedelta(minutes=30),
    )
    error = refused(verifier, envelope(old), Reason.EXPIRED)
    assert f"(agent clock {ahead.isoformat()})" in str(error)
    assert error.details["command_id"] == str(uuid.UUID(int=2))

    # The high-water mark is on disk: a restarted agent refuses it as well.
    agent.restart()
    refused(agent.verifier(skew=timedelta(hours=2)), envelope(old), Reason.EXPIRED)


def test_without_a_high_water_mark_the_same_command_would_pass(tmp_path: Path) -> None:
    # The control for the test above: the refusal there is the clock's doing.
    agent = make_agent(tmp_path)
    agent.system.now = T0 - 2 * DAY
    old = payload(issued_at=T0 - 2 * DAY, not_after=T0 + timedelta(minutes=30))
    assert agent.verifier(skew=timedelta(hours=2)).verify(envelope(old)).payload == old


# --- audience -------------------------------------------------------------------------


@pytest.mark.parametrize("audience", ["node-b", "", "node-a ", "NODE-A", "node-a,node-b"])
def test_a_command_for_another_node_is_wrong_audience(agent: Agent, audience: str) -> None:
    error = refused(agent.verifier(), envelope(payload(audience=audience)), Reason.WRONG_AUDIENCE)
    assert str(error) == f"addressed to {audience!r}, not to this node"
    assert error.details["command_id"] == COMMAND_ID


def test_expiry_is_checked_before_audience(agent: Agent) -> None:
    message = payload(audience="node-b", issued_at=T0 - DAY, not_after=T0 - timedelta(hours=1))
    error = refused(agent.verifier(), envelope(message), Reason.EXPIRED)
    assert error.details["command_id"] == COMMAND_ID


# --- the keyset's own expiry ------------------------------------------------------------


def test_an_expired_keyset_trusts_no_command(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, keyset_expires_at=T0 + DAY)
    verifier = agent.verifier()
    later = T0 + 2 * DAY
    agent.system.now = later
    for n in range(3):
        message = payload(
            command_id=str(uuid.UUID(int=n + 10)),
            issued_at=later,
            not_after=later + timedelta(minutes=10),
        )
        error = refused(verifier, envelope(message), Reason.UNKNOWN_KEY)
        assert "command_id" not in error.details
    assert agent.trust.keys(later) == {}


def test_a_keyset_expired_by_the_agent_clock_trusts_nothing_even_if_the_system_clock_says_otherwise(
    tmp_path: Path,
) -> None:
    agent = make_agent(tmp_path, keyset_expires_at=T0 + DAY)
    verifier = agent.verifier(skew=timedelta(days=2))
    # A command issued just after the keyset's expiry, accepted with the large skew
    # while the keys were still usable by the agent clock, sets the high-water mark.
    issued_at = T0 + DAY + timedelta(hours=1)
    verifier.verify(envelope(payload(issued_at=issued_at, not_after=issued_at + DAY)))
    agent.system.now = T0  # back before the keyset's expiry
    assert agent.clock.now() == issued_at
    message = payload(
        command_id=str(uuid.UUID(int=3)),
        issued_at=T0,
        not_after=issued_at + timedelta(hours=1),
    )
    refused(verifier, envelope(message), Reason.UNKNOWN_KEY)
