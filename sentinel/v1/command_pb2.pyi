import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_MODE_UNSPECIFIED: _ClassVar[CommandMode]
    COMMAND_MODE_EXECUTE: _ClassVar[CommandMode]
    COMMAND_MODE_SHADOW: _ClassVar[CommandMode]

class CommandState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_STATE_UNSPECIFIED: _ClassVar[CommandState]
    COMMAND_STATE_PENDING: _ClassVar[CommandState]
    COMMAND_STATE_AWAITING_APPROVAL: _ClassVar[CommandState]
    COMMAND_STATE_EXECUTED: _ClassVar[CommandState]
    COMMAND_STATE_PLANNED: _ClassVar[CommandState]
    COMMAND_STATE_REFUSED: _ClassVar[CommandState]
    COMMAND_STATE_FAILED: _ClassVar[CommandState]
    COMMAND_STATE_EXPIRED: _ClassVar[CommandState]
    COMMAND_STATE_INTERRUPTED: _ClassVar[CommandState]
COMMAND_MODE_UNSPECIFIED: CommandMode
COMMAND_MODE_EXECUTE: CommandMode
COMMAND_MODE_SHADOW: CommandMode
COMMAND_STATE_UNSPECIFIED: CommandState
COMMAND_STATE_PENDING: CommandState
COMMAND_STATE_AWAITING_APPROVAL: CommandState
COMMAND_STATE_EXECUTED: CommandState
COMMAND_STATE_PLANNED: CommandState
COMMAND_STATE_REFUSED: CommandState
COMMAND_STATE_FAILED: CommandState
COMMAND_STATE_EXPIRED: CommandState
COMMAND_STATE_INTERRUPTED: CommandState

class ParameterValue(_message.Message):
    __slots__ = ("string_value", "int_value", "double_value", "bool_value", "duration_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    DURATION_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    double_value: float
    bool_value: bool
    duration_value: _duration_pb2.Duration
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., duration_value: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CommandTarget(_message.Message):
    __slots__ = ("node_id", "label_selector")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    label_selector: str
    def __init__(self, node_id: _Optional[str] = ..., label_selector: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("command_id", "target", "action", "parameters", "mode", "issuer", "issued_at", "not_after", "idempotency_key", "policy_version", "state", "nodes", "approvals", "required_approvals", "break_glass", "published")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParameterValue, _Mapping]] = ...) -> None: ...
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_APPROVALS_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    target: CommandTarget
    action: str
    parameters: _containers.MessageMap[str, ParameterValue]
    mode: CommandMode
    issuer: str
    issued_at: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    idempotency_key: str
    policy_version: int
    state: CommandState
    nodes: _containers.RepeatedCompositeFieldContainer[NodeCommandStatus]
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    required_approvals: int
    break_glass: BreakGlass
    published: bool
    def __init__(self, command_id: _Optional[str] = ..., target: _Optional[_Union[CommandTarget, _Mapping]] = ..., action: _Optional[str] = ..., parameters: _Optional[_Mapping[str, ParameterValue]] = ..., mode: _Optional[_Union[CommandMode, str]] = ..., issuer: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., policy_version: _Optional[int] = ..., state: _Optional[_Union[CommandState, str]] = ..., nodes: _Optional[_Iterable[_Union[NodeCommandStatus, _Mapping]]] = ..., approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ..., required_approvals: _Optional[int] = ..., break_glass: _Optional[_Union[BreakGlass, _Mapping]] = ..., published: _Optional[bool] = ...) -> None: ...

class NodeCommandStatus(_message.Message):
    __slots__ = ("node_id", "state", "reason", "message", "updated_at", "plan")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    state: CommandState
    reason: str
    message: str
    updated_at: _timestamp_pb2.Timestamp
    plan: _containers.RepeatedCompositeFieldContainer[PlannedChange]
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[_Union[CommandState, str]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan: _Optional[_Iterable[_Union[PlannedChange, _Mapping]]] = ...) -> None: ...

class PlannedChange(_message.Message):
    __slots__ = ("resource", "field", "from_value", "to_value", "description")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FROM_VALUE_FIELD_NUMBER: _ClassVar[int]
    TO_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    resource: str
    field: str
    from_value: str
    to_value: str
    description: str
    def __init__(self, resource: _Optional[str] = ..., field: _Optional[str] = ..., from_value: _Optional[str] = ..., to_value: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("approver", "approved_at", "comment")
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    APPROVED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    approver: str
    approved_at: _timestamp_pb2.Timestamp
    comment: str
    def __init__(self, approver: _Optional[str] = ..., approved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[str] = ...) -> None: ...

class CommandPayload(_message.Message):
    __slots__ = ("command_id", "issuer", "issued_at", "not_after", "audience", "action", "parameters", "mode", "policy_version", "rollout_id", "selector", "approvals", "break_glass")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParameterValue, _Mapping]] = ...) -> None: ...
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    issuer: str
    issued_at: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    audience: str
    action: str
    parameters: _containers.MessageMap[str, ParameterValue]
    mode: CommandMode
    policy_version: int
    rollout_id: str
    selector: str
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    break_glass: BreakGlass
    def __init__(self, command_id: _Optional[str] = ..., issuer: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audience: _Optional[str] = ..., action: _Optional[str] = ..., parameters: _Optional[_Mapping[str, ParameterValue]] = ..., mode: _Optional[_Union[CommandMode, str]] = ..., policy_version: _Optional[int] = ..., rollout_id: _Optional[str] = ..., selector: _Optional[str] = ..., approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ..., break_glass: _Optional[_Union[BreakGlass, _Mapping]] = ...) -> None: ...

class BreakGlass(_message.Message):
    __slots__ = ("admin", "reason", "expires_at")
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    admin: str
    reason: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, admin: _Optional[str] = ..., reason: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "node_id", "state", "reason", "message", "changes", "finished_at", "stream_seq", "claimed_command_id")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQ_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    node_id: str
    state: CommandState
    reason: str
    message: str
    changes: _containers.RepeatedCompositeFieldContainer[PlannedChange]
    finished_at: _timestamp_pb2.Timestamp
    stream_seq: int
    claimed_command_id: str
    def __init__(self, command_id: _Optional[str] = ..., node_id: _Optional[str] = ..., state: _Optional[_Union[CommandState, str]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., changes: _Optional[_Iterable[_Union[PlannedChange, _Mapping]]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream_seq: _Optional[int] = ..., claimed_command_id: _Optional[str] = ...) -> None: ...

class IssueCommandRequest(_message.Message):
    __slots__ = ("target", "action", "parameters", "ttl", "mode", "idempotency_key", "break_glass")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParameterValue, _Mapping]] = ...) -> None: ...
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_FIELD_NUMBER: _ClassVar[int]
    target: CommandTarget
    action: str
    parameters: _containers.MessageMap[str, ParameterValue]
    ttl: _duration_pb2.Duration
    mode: CommandMode
    idempotency_key: str
    break_glass: BreakGlassRequest
    def __init__(self, target: _Optional[_Union[CommandTarget, _Mapping]] = ..., action: _Optional[str] = ..., parameters: _Optional[_Mapping[str, ParameterValue]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., mode: _Optional[_Union[CommandMode, str]] = ..., idempotency_key: _Optional[str] = ..., break_glass: _Optional[_Union[BreakGlassRequest, _Mapping]] = ...) -> None: ...

class BreakGlassRequest(_message.Message):
    __slots__ = ("reason", "ttl")
    REASON_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    reason: str
    ttl: _duration_pb2.Duration
    def __init__(self, reason: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class IssueCommandResponse(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: Command
    def __init__(self, command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class GetCommandRequest(_message.Message):
    __slots__ = ("command_id",)
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    def __init__(self, command_id: _Optional[str] = ...) -> None: ...

class GetCommandResponse(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: Command
    def __init__(self, command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class ListCommandsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "node_id", "state", "action")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    node_id: str
    state: CommandState
    action: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., node_id: _Optional[str] = ..., state: _Optional[_Union[CommandState, str]] = ..., action: _Optional[str] = ...) -> None: ...

class ListCommandsResponse(_message.Message):
    __slots__ = ("commands", "next_page_token")
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    next_page_token: str
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchCommandRequest(_message.Message):
    __slots__ = ("command_id",)
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    def __init__(self, command_id: _Optional[str] = ...) -> None: ...

class WatchCommandResponse(_message.Message):
    __slots__ = ("status", "command")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    status: NodeCommandStatus
    command: Command
    def __init__(self, status: _Optional[_Union[NodeCommandStatus, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class ApproveCommandRequest(_message.Message):
    __slots__ = ("command_id", "comment")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    comment: str
    def __init__(self, command_id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class ApproveCommandResponse(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: Command
    def __init__(self, command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...
