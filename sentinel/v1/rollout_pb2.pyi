import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sentinel.v1 import command_pb2 as _command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RolloutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_STATE_UNSPECIFIED: _ClassVar[RolloutState]
    ROLLOUT_STATE_PENDING: _ClassVar[RolloutState]
    ROLLOUT_STATE_PROGRESSING: _ClassVar[RolloutState]
    ROLLOUT_STATE_PAUSED: _ClassVar[RolloutState]
    ROLLOUT_STATE_SUCCEEDED: _ClassVar[RolloutState]
    ROLLOUT_STATE_ABORTED: _ClassVar[RolloutState]
    ROLLOUT_STATE_ROLLED_BACK: _ClassVar[RolloutState]
    ROLLOUT_STATE_FAILED: _ClassVar[RolloutState]

class TrafficRouting(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAFFIC_ROUTING_UNSPECIFIED: _ClassVar[TrafficRouting]
    TRAFFIC_ROUTING_REPLICA_RATIO: _ClassVar[TrafficRouting]
    TRAFFIC_ROUTING_GATEWAY_API: _ClassVar[TrafficRouting]

class CriterionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CRITERION_KIND_UNSPECIFIED: _ClassVar[CriterionKind]
    CRITERION_KIND_ERROR_RATE: _ClassVar[CriterionKind]
    CRITERION_KIND_LATENCY_P95: _ClassVar[CriterionKind]
    CRITERION_KIND_GPU_XID: _ClassVar[CriterionKind]
    CRITERION_KIND_GPU_ECC: _ClassVar[CriterionKind]
    CRITERION_KIND_GPU_THROTTLING: _ClassVar[CriterionKind]
    CRITERION_KIND_CUSTOM: _ClassVar[CriterionKind]

class AnalysisVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANALYSIS_VERDICT_UNSPECIFIED: _ClassVar[AnalysisVerdict]
    ANALYSIS_VERDICT_PASS: _ClassVar[AnalysisVerdict]
    ANALYSIS_VERDICT_INCONCLUSIVE: _ClassVar[AnalysisVerdict]
    ANALYSIS_VERDICT_FAIL: _ClassVar[AnalysisVerdict]
ROLLOUT_STATE_UNSPECIFIED: RolloutState
ROLLOUT_STATE_PENDING: RolloutState
ROLLOUT_STATE_PROGRESSING: RolloutState
ROLLOUT_STATE_PAUSED: RolloutState
ROLLOUT_STATE_SUCCEEDED: RolloutState
ROLLOUT_STATE_ABORTED: RolloutState
ROLLOUT_STATE_ROLLED_BACK: RolloutState
ROLLOUT_STATE_FAILED: RolloutState
TRAFFIC_ROUTING_UNSPECIFIED: TrafficRouting
TRAFFIC_ROUTING_REPLICA_RATIO: TrafficRouting
TRAFFIC_ROUTING_GATEWAY_API: TrafficRouting
CRITERION_KIND_UNSPECIFIED: CriterionKind
CRITERION_KIND_ERROR_RATE: CriterionKind
CRITERION_KIND_LATENCY_P95: CriterionKind
CRITERION_KIND_GPU_XID: CriterionKind
CRITERION_KIND_GPU_ECC: CriterionKind
CRITERION_KIND_GPU_THROTTLING: CriterionKind
CRITERION_KIND_CUSTOM: CriterionKind
ANALYSIS_VERDICT_UNSPECIFIED: AnalysisVerdict
ANALYSIS_VERDICT_PASS: AnalysisVerdict
ANALYSIS_VERDICT_INCONCLUSIVE: AnalysisVerdict
ANALYSIS_VERDICT_FAIL: AnalysisVerdict

class Rollout(_message.Message):
    __slots__ = ("rollout_id", "name", "state", "target", "strategy", "analysis", "shadow", "current_step", "decisions", "last_score", "creator", "created_at", "updated_at", "message", "command_ids")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_SCORE_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_IDS_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    name: str
    state: RolloutState
    target: RolloutTarget
    strategy: RolloutStrategy
    analysis: AnalysisSpec
    shadow: bool
    current_step: int
    decisions: _containers.RepeatedCompositeFieldContainer[RolloutDecision]
    last_score: HealthScore
    creator: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    message: str
    command_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rollout_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[RolloutState, str]] = ..., target: _Optional[_Union[RolloutTarget, _Mapping]] = ..., strategy: _Optional[_Union[RolloutStrategy, _Mapping]] = ..., analysis: _Optional[_Union[AnalysisSpec, _Mapping]] = ..., shadow: _Optional[bool] = ..., current_step: _Optional[int] = ..., decisions: _Optional[_Iterable[_Union[RolloutDecision, _Mapping]]] = ..., last_score: _Optional[_Union[HealthScore, _Mapping]] = ..., creator: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., command_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RolloutTarget(_message.Message):
    __slots__ = ("workload", "fleet")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    workload: KubernetesWorkloadTarget
    fleet: FleetChangeTarget
    def __init__(self, workload: _Optional[_Union[KubernetesWorkloadTarget, _Mapping]] = ..., fleet: _Optional[_Union[FleetChangeTarget, _Mapping]] = ...) -> None: ...

class KubernetesWorkloadTarget(_message.Message):
    __slots__ = ("namespace", "stable_deployment", "canary_deployment", "routing", "http_route", "executor_node_id", "container_images")
    class ContainerImagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STABLE_DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    CANARY_DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    HTTP_ROUTE_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_IMAGES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    stable_deployment: str
    canary_deployment: str
    routing: TrafficRouting
    http_route: str
    executor_node_id: str
    container_images: _containers.ScalarMap[str, str]
    def __init__(self, namespace: _Optional[str] = ..., stable_deployment: _Optional[str] = ..., canary_deployment: _Optional[str] = ..., routing: _Optional[_Union[TrafficRouting, str]] = ..., http_route: _Optional[str] = ..., executor_node_id: _Optional[str] = ..., container_images: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FleetChangeTarget(_message.Message):
    __slots__ = ("label_selector", "action", "parameters", "rollback_action", "rollback_parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _command_pb2.ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_command_pb2.ParameterValue, _Mapping]] = ...) -> None: ...
    class RollbackParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _command_pb2.ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_command_pb2.ParameterValue, _Mapping]] = ...) -> None: ...
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_ACTION_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    label_selector: str
    action: str
    parameters: _containers.MessageMap[str, _command_pb2.ParameterValue]
    rollback_action: str
    rollback_parameters: _containers.MessageMap[str, _command_pb2.ParameterValue]
    def __init__(self, label_selector: _Optional[str] = ..., action: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _command_pb2.ParameterValue]] = ..., rollback_action: _Optional[str] = ..., rollback_parameters: _Optional[_Mapping[str, _command_pb2.ParameterValue]] = ...) -> None: ...

class RolloutStrategy(_message.Message):
    __slots__ = ("canary", "waves")
    CANARY_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    canary: CanaryStrategy
    waves: WaveStrategy
    def __init__(self, canary: _Optional[_Union[CanaryStrategy, _Mapping]] = ..., waves: _Optional[_Union[WaveStrategy, _Mapping]] = ...) -> None: ...

class CanaryStrategy(_message.Message):
    __slots__ = ("steps",)
    STEPS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[CanaryStep]
    def __init__(self, steps: _Optional[_Iterable[_Union[CanaryStep, _Mapping]]] = ...) -> None: ...

class CanaryStep(_message.Message):
    __slots__ = ("set_weight", "pause", "analyze")
    SET_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    ANALYZE_FIELD_NUMBER: _ClassVar[int]
    set_weight: int
    pause: PauseStep
    analyze: AnalyzeStep
    def __init__(self, set_weight: _Optional[int] = ..., pause: _Optional[_Union[PauseStep, _Mapping]] = ..., analyze: _Optional[_Union[AnalyzeStep, _Mapping]] = ...) -> None: ...

class PauseStep(_message.Message):
    __slots__ = ("duration",)
    DURATION_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AnalyzeStep(_message.Message):
    __slots__ = ("duration",)
    DURATION_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WaveStrategy(_message.Message):
    __slots__ = ("waves", "abort_failure_ratio")
    WAVES_FIELD_NUMBER: _ClassVar[int]
    ABORT_FAILURE_RATIO_FIELD_NUMBER: _ClassVar[int]
    waves: _containers.RepeatedCompositeFieldContainer[Wave]
    abort_failure_ratio: float
    def __init__(self, waves: _Optional[_Iterable[_Union[Wave, _Mapping]]] = ..., abort_failure_ratio: _Optional[float] = ...) -> None: ...

class Wave(_message.Message):
    __slots__ = ("node_count", "percent", "bake_time")
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    BAKE_TIME_FIELD_NUMBER: _ClassVar[int]
    node_count: int
    percent: float
    bake_time: _duration_pb2.Duration
    def __init__(self, node_count: _Optional[int] = ..., percent: _Optional[float] = ..., bake_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AnalysisSpec(_message.Message):
    __slots__ = ("criteria", "pass_threshold", "fail_threshold", "interval")
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    PASS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FAIL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    criteria: _containers.RepeatedCompositeFieldContainer[AnalysisCriterion]
    pass_threshold: float
    fail_threshold: float
    interval: _duration_pb2.Duration
    def __init__(self, criteria: _Optional[_Iterable[_Union[AnalysisCriterion, _Mapping]]] = ..., pass_threshold: _Optional[float] = ..., fail_threshold: _Optional[float] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AnalysisCriterion(_message.Message):
    __slots__ = ("name", "kind", "weight", "objective", "query")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: CriterionKind
    weight: float
    objective: float
    query: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[CriterionKind, str]] = ..., weight: _Optional[float] = ..., objective: _Optional[float] = ..., query: _Optional[str] = ...) -> None: ...

class HealthScore(_message.Message):
    __slots__ = ("score", "verdict", "criteria", "evaluated_at")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    score: float
    verdict: AnalysisVerdict
    criteria: _containers.RepeatedCompositeFieldContainer[CriterionScore]
    evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, score: _Optional[float] = ..., verdict: _Optional[_Union[AnalysisVerdict, str]] = ..., criteria: _Optional[_Iterable[_Union[CriterionScore, _Mapping]]] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CriterionScore(_message.Message):
    __slots__ = ("name", "score", "weight", "observed", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    score: float
    weight: float
    observed: float
    detail: str
    def __init__(self, name: _Optional[str] = ..., score: _Optional[float] = ..., weight: _Optional[float] = ..., observed: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class RolloutDecision(_message.Message):
    __slots__ = ("decided_at", "step", "action", "reason", "score", "shadow")
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    decided_at: _timestamp_pb2.Timestamp
    step: int
    action: str
    reason: str
    score: HealthScore
    shadow: bool
    def __init__(self, decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[int] = ..., action: _Optional[str] = ..., reason: _Optional[str] = ..., score: _Optional[_Union[HealthScore, _Mapping]] = ..., shadow: _Optional[bool] = ...) -> None: ...

class CreateRolloutRequest(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class CreateRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class GetRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: RolloutState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[RolloutState, str]] = ...) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts", "next_page_token")
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    next_page_token: str
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class WatchRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class PauseRolloutRequest(_message.Message):
    __slots__ = ("rollout_id", "reason")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    reason: str
    def __init__(self, rollout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ResumeRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class ResumeRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class PromoteRolloutRequest(_message.Message):
    __slots__ = ("rollout_id", "full")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    full: bool
    def __init__(self, rollout_id: _Optional[str] = ..., full: _Optional[bool] = ...) -> None: ...

class PromoteRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class AbortRolloutRequest(_message.Message):
    __slots__ = ("rollout_id", "reason")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    reason: str
    def __init__(self, rollout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...
