import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sentinel.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_ONLINE: _ClassVar[NodeState]
    NODE_STATE_OFFLINE: _ClassVar[NodeState]
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_ONLINE: NodeState
NODE_STATE_OFFLINE: NodeState

class Node(_message.Message):
    __slots__ = ("node_id", "state", "labels", "reported_labels", "assigned_labels", "host", "gpus", "latest_sample", "first_seen", "last_seen", "connected_since", "boot_id", "agent_version", "counters")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ReportedLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AssignedLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_LABELS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_LABELS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    LATEST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_SINCE_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    state: NodeState
    labels: _containers.ScalarMap[str, str]
    reported_labels: _containers.ScalarMap[str, str]
    assigned_labels: _containers.ScalarMap[str, str]
    host: _telemetry_pb2.HostInventory
    gpus: _containers.RepeatedCompositeFieldContainer[_telemetry_pb2.GpuInventory]
    latest_sample: _telemetry_pb2.Sample
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    connected_since: _timestamp_pb2.Timestamp
    boot_id: str
    agent_version: str
    counters: TelemetryCounters
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., reported_labels: _Optional[_Mapping[str, str]] = ..., assigned_labels: _Optional[_Mapping[str, str]] = ..., host: _Optional[_Union[_telemetry_pb2.HostInventory, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[_telemetry_pb2.GpuInventory, _Mapping]]] = ..., latest_sample: _Optional[_Union[_telemetry_pb2.Sample, _Mapping]] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., connected_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., boot_id: _Optional[str] = ..., agent_version: _Optional[str] = ..., counters: _Optional[_Union[TelemetryCounters, _Mapping]] = ...) -> None: ...

class TelemetryCounters(_message.Message):
    __slots__ = ("batches_received", "samples_received", "duplicates_dropped", "gaps_announced", "batches_in_gaps", "last_acked_seq")
    BATCHES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    GAPS_ANNOUNCED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_IN_GAPS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    batches_received: int
    samples_received: int
    duplicates_dropped: int
    gaps_announced: int
    batches_in_gaps: int
    last_acked_seq: int
    def __init__(self, batches_received: _Optional[int] = ..., samples_received: _Optional[int] = ..., duplicates_dropped: _Optional[int] = ..., gaps_announced: _Optional[int] = ..., batches_in_gaps: _Optional[int] = ..., last_acked_seq: _Optional[int] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "label_selector")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    label_selector: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., label_selector: _Optional[str] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token", "total_size")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    next_page_token: str
    total_size: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: Node
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class WatchTelemetryRequest(_message.Message):
    __slots__ = ("node_id", "label_selector")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    label_selector: str
    def __init__(self, node_id: _Optional[str] = ..., label_selector: _Optional[str] = ...) -> None: ...

class WatchTelemetryResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _telemetry_pb2.TelemetryBatch
    def __init__(self, batch: _Optional[_Union[_telemetry_pb2.TelemetryBatch, _Mapping]] = ...) -> None: ...

class RecommendPlacementRequest(_message.Message):
    __slots__ = ("gpu_count", "gpu_model", "min_free_memory_bytes_per_gpu", "label_selector", "max_results")
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    MIN_FREE_MEMORY_BYTES_PER_GPU_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    gpu_count: int
    gpu_model: str
    min_free_memory_bytes_per_gpu: int
    label_selector: str
    max_results: int
    def __init__(self, gpu_count: _Optional[int] = ..., gpu_model: _Optional[str] = ..., min_free_memory_bytes_per_gpu: _Optional[int] = ..., label_selector: _Optional[str] = ..., max_results: _Optional[int] = ...) -> None: ...

class RecommendPlacementResponse(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[PlacementCandidate]
    def __init__(self, candidates: _Optional[_Iterable[_Union[PlacementCandidate, _Mapping]]] = ...) -> None: ...

class PlacementCandidate(_message.Message):
    __slots__ = ("node_id", "score", "gpu_indices", "reasons")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    GPU_INDICES_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    score: float
    gpu_indices: _containers.RepeatedScalarFieldContainer[int]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., score: _Optional[float] = ..., gpu_indices: _Optional[_Iterable[int]] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...
