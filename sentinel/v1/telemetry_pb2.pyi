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

class GpuHealthState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GPU_HEALTH_STATE_UNSPECIFIED: _ClassVar[GpuHealthState]
    GPU_HEALTH_STATE_HEALTHY: _ClassVar[GpuHealthState]
    GPU_HEALTH_STATE_DEGRADED: _ClassVar[GpuHealthState]
    GPU_HEALTH_STATE_FAILED: _ClassVar[GpuHealthState]

class GapReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GAP_REASON_UNSPECIFIED: _ClassVar[GapReason]
    GAP_REASON_OVERFLOW: _ClassVar[GapReason]
    GAP_REASON_CORRUPT: _ClassVar[GapReason]
GPU_HEALTH_STATE_UNSPECIFIED: GpuHealthState
GPU_HEALTH_STATE_HEALTHY: GpuHealthState
GPU_HEALTH_STATE_DEGRADED: GpuHealthState
GPU_HEALTH_STATE_FAILED: GpuHealthState
GAP_REASON_UNSPECIFIED: GapReason
GAP_REASON_OVERFLOW: GapReason
GAP_REASON_CORRUPT: GapReason

class TelemetryBatch(_message.Message):
    __slots__ = ("node_id", "boot_id", "seq", "samples", "sealed_at")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEALED_AT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_id: str
    seq: int
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    sealed_at: _timestamp_pb2.Timestamp
    def __init__(self, node_id: _Optional[str] = ..., boot_id: _Optional[str] = ..., seq: _Optional[int] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., sealed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("time", "host", "gpus")
    TIME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    host: HostMetrics
    gpus: _containers.RepeatedCompositeFieldContainer[GpuMetrics]
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., host: _Optional[_Union[HostMetrics, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[GpuMetrics, _Mapping]]] = ...) -> None: ...

class HostMetrics(_message.Message):
    __slots__ = ("cpu_percent", "cpu_count", "load1", "load5", "load15", "memory_total_bytes", "memory_used_bytes", "memory_available_bytes", "swap_used_bytes", "disks", "disk_read_bytes_total", "disk_write_bytes_total", "network_receive_bytes_total", "network_transmit_bytes_total", "uptime")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    LOAD5_FIELD_NUMBER: _ClassVar[int]
    LOAD15_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SWAP_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISKS_FIELD_NUMBER: _ClassVar[int]
    DISK_READ_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DISK_WRITE_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NETWORK_RECEIVE_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NETWORK_TRANSMIT_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    cpu_count: int
    load1: float
    load5: float
    load15: float
    memory_total_bytes: int
    memory_used_bytes: int
    memory_available_bytes: int
    swap_used_bytes: int
    disks: _containers.RepeatedCompositeFieldContainer[DiskUsage]
    disk_read_bytes_total: int
    disk_write_bytes_total: int
    network_receive_bytes_total: int
    network_transmit_bytes_total: int
    uptime: _duration_pb2.Duration
    def __init__(self, cpu_percent: _Optional[float] = ..., cpu_count: _Optional[int] = ..., load1: _Optional[float] = ..., load5: _Optional[float] = ..., load15: _Optional[float] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_available_bytes: _Optional[int] = ..., swap_used_bytes: _Optional[int] = ..., disks: _Optional[_Iterable[_Union[DiskUsage, _Mapping]]] = ..., disk_read_bytes_total: _Optional[int] = ..., disk_write_bytes_total: _Optional[int] = ..., network_receive_bytes_total: _Optional[int] = ..., network_transmit_bytes_total: _Optional[int] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DiskUsage(_message.Message):
    __slots__ = ("mountpoint", "device", "total_bytes", "used_bytes")
    MOUNTPOINT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    mountpoint: str
    device: str
    total_bytes: int
    used_bytes: int
    def __init__(self, mountpoint: _Optional[str] = ..., device: _Optional[str] = ..., total_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ...) -> None: ...

class GpuHealth(_message.Message):
    __slots__ = ("state", "reasons")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    state: GpuHealthState
    reasons: _containers.RepeatedCompositeFieldContainer[GpuHealthReason]
    def __init__(self, state: _Optional[_Union[GpuHealthState, str]] = ..., reasons: _Optional[_Iterable[_Union[GpuHealthReason, _Mapping]]] = ...) -> None: ...

class GpuHealthReason(_message.Message):
    __slots__ = ("source", "xid", "detail", "implies")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    XID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    IMPLIES_FIELD_NUMBER: _ClassVar[int]
    source: str
    xid: int
    detail: str
    implies: GpuHealthState
    def __init__(self, source: _Optional[str] = ..., xid: _Optional[int] = ..., detail: _Optional[str] = ..., implies: _Optional[_Union[GpuHealthState, str]] = ...) -> None: ...

class GpuMetrics(_message.Message):
    __slots__ = ("index", "uuid", "utilization_gpu_percent", "utilization_memory_percent", "encoder_utilization_percent", "decoder_utilization_percent", "memory_used_bytes", "memory_free_bytes", "temperature_gpu_c", "temperature_memory_c", "power_w", "power_average_w", "energy_consumed_mj", "clock_sm_mhz", "clock_memory_mhz", "performance_state", "clock_event_reasons", "clock_event_reason_names", "pcie_transmit_bytes_per_second", "pcie_receive_bytes_per_second", "pcie_transmit_bytes_total", "pcie_receive_bytes_total", "pcie_replay_total", "process_count", "ecc_corrected_volatile", "ecc_uncorrected_volatile", "ecc_corrected_aggregate", "ecc_uncorrected_aggregate", "remapped_rows_correctable", "remapped_rows_uncorrectable", "row_remap_pending", "row_remap_failure", "last_xid", "xid_counts", "health", "unsupported", "attribution")
    class XidCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_GPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ENCODER_UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DECODER_UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_GPU_C_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_MEMORY_C_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    POWER_AVERAGE_W_FIELD_NUMBER: _ClassVar[int]
    ENERGY_CONSUMED_MJ_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SM_MHZ_FIELD_NUMBER: _ClassVar[int]
    CLOCK_MEMORY_MHZ_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_STATE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_EVENT_REASONS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_EVENT_REASON_NAMES_FIELD_NUMBER: _ClassVar[int]
    PCIE_TRANSMIT_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PCIE_RECEIVE_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PCIE_TRANSMIT_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PCIE_RECEIVE_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PCIE_REPLAY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PROCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    ECC_CORRECTED_VOLATILE_FIELD_NUMBER: _ClassVar[int]
    ECC_UNCORRECTED_VOLATILE_FIELD_NUMBER: _ClassVar[int]
    ECC_CORRECTED_AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    ECC_UNCORRECTED_AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    REMAPPED_ROWS_CORRECTABLE_FIELD_NUMBER: _ClassVar[int]
    REMAPPED_ROWS_UNCORRECTABLE_FIELD_NUMBER: _ClassVar[int]
    ROW_REMAP_PENDING_FIELD_NUMBER: _ClassVar[int]
    ROW_REMAP_FAILURE_FIELD_NUMBER: _ClassVar[int]
    LAST_XID_FIELD_NUMBER: _ClassVar[int]
    XID_COUNTS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    utilization_gpu_percent: int
    utilization_memory_percent: int
    encoder_utilization_percent: int
    decoder_utilization_percent: int
    memory_used_bytes: int
    memory_free_bytes: int
    temperature_gpu_c: int
    temperature_memory_c: int
    power_w: float
    power_average_w: float
    energy_consumed_mj: int
    clock_sm_mhz: int
    clock_memory_mhz: int
    performance_state: int
    clock_event_reasons: int
    clock_event_reason_names: _containers.RepeatedScalarFieldContainer[str]
    pcie_transmit_bytes_per_second: float
    pcie_receive_bytes_per_second: float
    pcie_transmit_bytes_total: int
    pcie_receive_bytes_total: int
    pcie_replay_total: int
    process_count: int
    ecc_corrected_volatile: int
    ecc_uncorrected_volatile: int
    ecc_corrected_aggregate: int
    ecc_uncorrected_aggregate: int
    remapped_rows_correctable: int
    remapped_rows_uncorrectable: int
    row_remap_pending: bool
    row_remap_failure: bool
    last_xid: int
    xid_counts: _containers.ScalarMap[int, int]
    health: GpuHealth
    unsupported: _containers.RepeatedScalarFieldContainer[str]
    attribution: GpuAttribution
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., utilization_gpu_percent: _Optional[int] = ..., utilization_memory_percent: _Optional[int] = ..., encoder_utilization_percent: _Optional[int] = ..., decoder_utilization_percent: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_free_bytes: _Optional[int] = ..., temperature_gpu_c: _Optional[int] = ..., temperature_memory_c: _Optional[int] = ..., power_w: _Optional[float] = ..., power_average_w: _Optional[float] = ..., energy_consumed_mj: _Optional[int] = ..., clock_sm_mhz: _Optional[int] = ..., clock_memory_mhz: _Optional[int] = ..., performance_state: _Optional[int] = ..., clock_event_reasons: _Optional[int] = ..., clock_event_reason_names: _Optional[_Iterable[str]] = ..., pcie_transmit_bytes_per_second: _Optional[float] = ..., pcie_receive_bytes_per_second: _Optional[float] = ..., pcie_transmit_bytes_total: _Optional[int] = ..., pcie_receive_bytes_total: _Optional[int] = ..., pcie_replay_total: _Optional[int] = ..., process_count: _Optional[int] = ..., ecc_corrected_volatile: _Optional[int] = ..., ecc_uncorrected_volatile: _Optional[int] = ..., ecc_corrected_aggregate: _Optional[int] = ..., ecc_uncorrected_aggregate: _Optional[int] = ..., remapped_rows_correctable: _Optional[int] = ..., remapped_rows_uncorrectable: _Optional[int] = ..., row_remap_pending: _Optional[bool] = ..., row_remap_failure: _Optional[bool] = ..., last_xid: _Optional[int] = ..., xid_counts: _Optional[_Mapping[int, int]] = ..., health: _Optional[_Union[GpuHealth, _Mapping]] = ..., unsupported: _Optional[_Iterable[str]] = ..., attribution: _Optional[_Union[GpuAttribution, _Mapping]] = ...) -> None: ...

class GpuAttribution(_message.Message):
    __slots__ = ("namespace", "pod", "container")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    container: str
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ...) -> None: ...

class HostInventory(_message.Message):
    __slots__ = ("hostname", "os", "kernel", "architecture", "cpu_model", "cpu_count", "memory_total_bytes", "boot_time", "agent_version", "gpu_backend", "gpu_driver_version", "nvml_version", "cuda_driver_version")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    BOOT_TIME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    GPU_BACKEND_FIELD_NUMBER: _ClassVar[int]
    GPU_DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    NVML_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    os: str
    kernel: str
    architecture: str
    cpu_model: str
    cpu_count: int
    memory_total_bytes: int
    boot_time: _timestamp_pb2.Timestamp
    agent_version: str
    gpu_backend: str
    gpu_driver_version: str
    nvml_version: str
    cuda_driver_version: int
    def __init__(self, hostname: _Optional[str] = ..., os: _Optional[str] = ..., kernel: _Optional[str] = ..., architecture: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., boot_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_version: _Optional[str] = ..., gpu_backend: _Optional[str] = ..., gpu_driver_version: _Optional[str] = ..., nvml_version: _Optional[str] = ..., cuda_driver_version: _Optional[int] = ...) -> None: ...

class GpuInventory(_message.Message):
    __slots__ = ("index", "uuid", "name", "serial", "pci_bus_id", "memory_total_bytes", "power_limit_w", "power_limit_min_w", "power_limit_max_w", "power_limit_default_w", "clock_sm_max_mhz", "clock_memory_max_mhz", "compute_capability", "vbios_version", "mig_enabled", "ecc_enabled", "pcie_generation_max", "pcie_width")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_W_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_MIN_W_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_MAX_W_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_DEFAULT_W_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SM_MAX_MHZ_FIELD_NUMBER: _ClassVar[int]
    CLOCK_MEMORY_MAX_MHZ_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    VBIOS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MIG_ENABLED_FIELD_NUMBER: _ClassVar[int]
    ECC_ENABLED_FIELD_NUMBER: _ClassVar[int]
    PCIE_GENERATION_MAX_FIELD_NUMBER: _ClassVar[int]
    PCIE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    serial: str
    pci_bus_id: str
    memory_total_bytes: int
    power_limit_w: float
    power_limit_min_w: float
    power_limit_max_w: float
    power_limit_default_w: float
    clock_sm_max_mhz: int
    clock_memory_max_mhz: int
    compute_capability: str
    vbios_version: str
    mig_enabled: bool
    ecc_enabled: bool
    pcie_generation_max: int
    pcie_width: int
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., serial: _Optional[str] = ..., pci_bus_id: _Optional[str] = ..., memory_total_bytes: _Optional[int] = ..., power_limit_w: _Optional[float] = ..., power_limit_min_w: _Optional[float] = ..., power_limit_max_w: _Optional[float] = ..., power_limit_default_w: _Optional[float] = ..., clock_sm_max_mhz: _Optional[int] = ..., clock_memory_max_mhz: _Optional[int] = ..., compute_capability: _Optional[str] = ..., vbios_version: _Optional[str] = ..., mig_enabled: _Optional[bool] = ..., ecc_enabled: _Optional[bool] = ..., pcie_generation_max: _Optional[int] = ..., pcie_width: _Optional[int] = ...) -> None: ...

class TelemetryGap(_message.Message):
    __slots__ = ("boot_id", "from_seq", "to_seq", "reason")
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    boot_id: str
    from_seq: int
    to_seq: int
    reason: GapReason
    def __init__(self, boot_id: _Optional[str] = ..., from_seq: _Optional[int] = ..., to_seq: _Optional[int] = ..., reason: _Optional[_Union[GapReason, str]] = ...) -> None: ...
