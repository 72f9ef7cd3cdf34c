import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sentinel.v1 import signing_pb2 as _signing_pb2
from sentinel.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "batch", "gap", "heartbeat")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    hello: AgentHello
    batch: _telemetry_pb2.TelemetryBatch
    gap: _telemetry_pb2.TelemetryGap
    heartbeat: Heartbeat
    def __init__(self, hello: _Optional[_Union[AgentHello, _Mapping]] = ..., batch: _Optional[_Union[_telemetry_pb2.TelemetryBatch, _Mapping]] = ..., gap: _Optional[_Union[_telemetry_pb2.TelemetryGap, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("hello_reply", "ack", "gap_ack", "keyset", "policy")
    HELLO_REPLY_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    GAP_ACK_FIELD_NUMBER: _ClassVar[int]
    KEYSET_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    hello_reply: HelloReply
    ack: TelemetryAck
    gap_ack: GapAck
    keyset: KeysetUpdate
    policy: PolicyUpdate
    def __init__(self, hello_reply: _Optional[_Union[HelloReply, _Mapping]] = ..., ack: _Optional[_Union[TelemetryAck, _Mapping]] = ..., gap_ack: _Optional[_Union[GapAck, _Mapping]] = ..., keyset: _Optional[_Union[KeysetUpdate, _Mapping]] = ..., policy: _Optional[_Union[PolicyUpdate, _Mapping]] = ...) -> None: ...

class AgentHello(_message.Message):
    __slots__ = ("node_id", "boot_id", "agent_version", "labels", "host", "gpus", "keyset_version", "policy_version", "heartbeat_interval", "started_at", "backlog_boot_ids")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    KEYSET_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_BOOT_IDS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_id: str
    agent_version: str
    labels: _containers.ScalarMap[str, str]
    host: _telemetry_pb2.HostInventory
    gpus: _containers.RepeatedCompositeFieldContainer[_telemetry_pb2.GpuInventory]
    keyset_version: int
    policy_version: int
    heartbeat_interval: _duration_pb2.Duration
    started_at: _timestamp_pb2.Timestamp
    backlog_boot_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., boot_id: _Optional[str] = ..., agent_version: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., host: _Optional[_Union[_telemetry_pb2.HostInventory, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[_telemetry_pb2.GpuInventory, _Mapping]]] = ..., keyset_version: _Optional[int] = ..., policy_version: _Optional[int] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., backlog_boot_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("hub_id", "nats_url", "acked_seq", "heartbeat_interval", "hub_time", "keyset_version")
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    NATS_URL_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HUB_TIME_FIELD_NUMBER: _ClassVar[int]
    KEYSET_VERSION_FIELD_NUMBER: _ClassVar[int]
    hub_id: str
    nats_url: str
    acked_seq: int
    heartbeat_interval: _duration_pb2.Duration
    hub_time: _timestamp_pb2.Timestamp
    keyset_version: int
    def __init__(self, hub_id: _Optional[str] = ..., nats_url: _Optional[str] = ..., acked_seq: _Optional[int] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., hub_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., keyset_version: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TelemetryAck(_message.Message):
    __slots__ = ("boot_id", "seq", "duplicate")
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    boot_id: str
    seq: int
    duplicate: bool
    def __init__(self, boot_id: _Optional[str] = ..., seq: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class GapAck(_message.Message):
    __slots__ = ("boot_id", "from_seq", "to_seq")
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    boot_id: str
    from_seq: int
    to_seq: int
    def __init__(self, boot_id: _Optional[str] = ..., from_seq: _Optional[int] = ..., to_seq: _Optional[int] = ...) -> None: ...

class KeysetUpdate(_message.Message):
    __slots__ = ("keyset",)
    KEYSET_FIELD_NUMBER: _ClassVar[int]
    keyset: _signing_pb2.SignedEnvelope
    def __init__(self, keyset: _Optional[_Union[_signing_pb2.SignedEnvelope, _Mapping]] = ...) -> None: ...

class PolicyUpdate(_message.Message):
    __slots__ = ("version", "bundle")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    version: int
    bundle: _signing_pb2.SignedEnvelope
    def __init__(self, version: _Optional[int] = ..., bundle: _Optional[_Union[_signing_pb2.SignedEnvelope, _Mapping]] = ...) -> None: ...

class RenewCertificateRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class RenewCertificateResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_bundle_pem", "not_after")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_bundle_pem: bytes
    not_after: _timestamp_pb2.Timestamp
    def __init__(self, certificate_pem: _Optional[bytes] = ..., ca_bundle_pem: _Optional[bytes] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
