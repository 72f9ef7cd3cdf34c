import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sentinel.v1 import signing_pb2 as _signing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeysetInfo(_message.Message):
    __slots__ = ("version", "issued_at", "expires_at", "keys", "command_signing_key_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    keys: _containers.RepeatedCompositeFieldContainer[_signing_pb2.TrustedKey]
    command_signing_key_id: str
    def __init__(self, version: _Optional[int] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[_signing_pb2.TrustedKey, _Mapping]]] = ..., command_signing_key_id: _Optional[str] = ...) -> None: ...

class GetKeysetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetKeysetResponse(_message.Message):
    __slots__ = ("keyset",)
    KEYSET_FIELD_NUMBER: _ClassVar[int]
    keyset: KeysetInfo
    def __init__(self, keyset: _Optional[_Union[KeysetInfo, _Mapping]] = ...) -> None: ...

class RotateCommandKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateCommandKeyResponse(_message.Message):
    __slots__ = ("keyset",)
    KEYSET_FIELD_NUMBER: _ClassVar[int]
    keyset: KeysetInfo
    def __init__(self, keyset: _Optional[_Union[KeysetInfo, _Mapping]] = ...) -> None: ...

class RetireKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class RetireKeyResponse(_message.Message):
    __slots__ = ("keyset",)
    KEYSET_FIELD_NUMBER: _ClassVar[int]
    keyset: KeysetInfo
    def __init__(self, keyset: _Optional[_Union[KeysetInfo, _Mapping]] = ...) -> None: ...
