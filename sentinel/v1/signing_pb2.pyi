import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyPurpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_PURPOSE_UNSPECIFIED: _ClassVar[KeyPurpose]
    KEY_PURPOSE_ROOT: _ClassVar[KeyPurpose]
    KEY_PURPOSE_COMMAND: _ClassVar[KeyPurpose]
    KEY_PURPOSE_POLICY: _ClassVar[KeyPurpose]
    KEY_PURPOSE_AUDIT: _ClassVar[KeyPurpose]
KEY_PURPOSE_UNSPECIFIED: KeyPurpose
KEY_PURPOSE_ROOT: KeyPurpose
KEY_PURPOSE_COMMAND: KeyPurpose
KEY_PURPOSE_POLICY: KeyPurpose
KEY_PURPOSE_AUDIT: KeyPurpose

class SignedEnvelope(_message.Message):
    __slots__ = ("payload", "signatures", "payload_type")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    signatures: _containers.RepeatedCompositeFieldContainer[Signature]
    payload_type: str
    def __init__(self, payload: _Optional[bytes] = ..., signatures: _Optional[_Iterable[_Union[Signature, _Mapping]]] = ..., payload_type: _Optional[str] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("key_id", "signature")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    signature: bytes
    def __init__(self, key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class TrustedKey(_message.Message):
    __slots__ = ("key_id", "purpose", "ed25519_public_key")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ED25519_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    purpose: KeyPurpose
    ed25519_public_key: bytes
    def __init__(self, key_id: _Optional[str] = ..., purpose: _Optional[_Union[KeyPurpose, str]] = ..., ed25519_public_key: _Optional[bytes] = ...) -> None: ...

class Keyset(_message.Message):
    __slots__ = ("version", "issued_at", "expires_at", "keys")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    version: int
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    keys: _containers.RepeatedCompositeFieldContainer[TrustedKey]
    def __init__(self, version: _Optional[int] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[TrustedKey, _Mapping]]] = ...) -> None: ...
