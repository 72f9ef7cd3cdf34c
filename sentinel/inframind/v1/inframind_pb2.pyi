import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sentinel.v1 import command_pb2 as _command_pb2
from sentinel.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanExecution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_EXECUTION_UNSPECIFIED: _ClassVar[PlanExecution]
    PLAN_EXECUTION_COMMANDS: _ClassVar[PlanExecution]
    PLAN_EXECUTION_ROLLOUT: _ClassVar[PlanExecution]
    PLAN_EXECUTION_SHADOW: _ClassVar[PlanExecution]

class OutcomeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_STATUS_UNSPECIFIED: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_EXECUTED: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_DENIED_BY_POLICY: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_SHADOWED: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_FAILED: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_ROLLED_BACK: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_EXPIRED: _ClassVar[OutcomeStatus]
PLAN_EXECUTION_UNSPECIFIED: PlanExecution
PLAN_EXECUTION_COMMANDS: PlanExecution
PLAN_EXECUTION_ROLLOUT: PlanExecution
PLAN_EXECUTION_SHADOW: PlanExecution
OUTCOME_STATUS_UNSPECIFIED: OutcomeStatus
OUTCOME_STATUS_EXECUTED: OutcomeStatus
OUTCOME_STATUS_DENIED_BY_POLICY: OutcomeStatus
OUTCOME_STATUS_SHADOWED: OutcomeStatus
OUTCOME_STATUS_FAILED: OutcomeStatus
OUTCOME_STATUS_ROLLED_BACK: OutcomeStatus
OUTCOME_STATUS_EXPIRED: OutcomeStatus

class StreamTelemetryRequest(_message.Message):
    __slots__ = ("batch", "node_labels")
    class NodeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BATCH_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    batch: _telemetry_pb2.TelemetryBatch
    node_labels: _containers.ScalarMap[str, str]
    def __init__(self, batch: _Optional[_Union[_telemetry_pb2.TelemetryBatch, _Mapping]] = ..., node_labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StreamTelemetryResponse(_message.Message):
    __slots__ = ("batches_accepted",)
    BATCHES_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    batches_accepted: int
    def __init__(self, batches_accepted: _Optional[int] = ...) -> None: ...

class WatchPlansRequest(_message.Message):
    __slots__ = ("hub_id",)
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    hub_id: str
    def __init__(self, hub_id: _Optional[str] = ...) -> None: ...

class WatchPlansResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: ActionPlan
    def __init__(self, plan: _Optional[_Union[ActionPlan, _Mapping]] = ...) -> None: ...

class ActionPlan(_message.Message):
    __slots__ = ("plan_id", "created_at", "horizon", "rationale", "confidence", "actions", "execution", "model")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    created_at: _timestamp_pb2.Timestamp
    horizon: _duration_pb2.Duration
    rationale: str
    confidence: float
    actions: _containers.RepeatedCompositeFieldContainer[ProposedAction]
    execution: PlanExecution
    model: str
    def __init__(self, plan_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., horizon: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., rationale: _Optional[str] = ..., confidence: _Optional[float] = ..., actions: _Optional[_Iterable[_Union[ProposedAction, _Mapping]]] = ..., execution: _Optional[_Union[PlanExecution, str]] = ..., model: _Optional[str] = ...) -> None: ...

class ProposedAction(_message.Message):
    __slots__ = ("target", "action", "parameters", "expected_effects")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _command_pb2.ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_command_pb2.ParameterValue, _Mapping]] = ...) -> None: ...
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_EFFECTS_FIELD_NUMBER: _ClassVar[int]
    target: _command_pb2.CommandTarget
    action: str
    parameters: _containers.MessageMap[str, _command_pb2.ParameterValue]
    expected_effects: _containers.RepeatedCompositeFieldContainer[ExpectedEffect]
    def __init__(self, target: _Optional[_Union[_command_pb2.CommandTarget, _Mapping]] = ..., action: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _command_pb2.ParameterValue]] = ..., expected_effects: _Optional[_Iterable[_Union[ExpectedEffect, _Mapping]]] = ...) -> None: ...

class ExpectedEffect(_message.Message):
    __slots__ = ("metric", "current_value", "expected_value", "within")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    WITHIN_FIELD_NUMBER: _ClassVar[int]
    metric: str
    current_value: float
    expected_value: float
    within: _duration_pb2.Duration
    def __init__(self, metric: _Optional[str] = ..., current_value: _Optional[float] = ..., expected_value: _Optional[float] = ..., within: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ObservedEffect(_message.Message):
    __slots__ = ("metric", "before_value", "after_value")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    BEFORE_VALUE_FIELD_NUMBER: _ClassVar[int]
    AFTER_VALUE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    before_value: float
    after_value: float
    def __init__(self, metric: _Optional[str] = ..., before_value: _Optional[float] = ..., after_value: _Optional[float] = ...) -> None: ...

class ReportOutcomeRequest(_message.Message):
    __slots__ = ("plan_id", "status", "command_ids", "rollout_id", "observed_effects", "observed_at", "detail")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_IDS_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_EFFECTS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    status: OutcomeStatus
    command_ids: _containers.RepeatedScalarFieldContainer[str]
    rollout_id: str
    observed_effects: _containers.RepeatedCompositeFieldContainer[ObservedEffect]
    observed_at: _timestamp_pb2.Timestamp
    detail: str
    def __init__(self, plan_id: _Optional[str] = ..., status: _Optional[_Union[OutcomeStatus, str]] = ..., command_ids: _Optional[_Iterable[str]] = ..., rollout_id: _Optional[str] = ..., observed_effects: _Optional[_Iterable[_Union[ObservedEffect, _Mapping]]] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., detail: _Optional[str] = ...) -> None: ...

class ReportOutcomeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
