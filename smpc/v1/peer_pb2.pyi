from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_INT16: _ClassVar[DType]
DTYPE_UNSPECIFIED: DType
DTYPE_INT64: DType
DTYPE_UINT8: DType
DTYPE_INT32: DType
DTYPE_FLOAT64: DType
DTYPE_FLOAT32: DType
DTYPE_BOOL: DType
DTYPE_INT8: DType
DTYPE_INT16: DType

class Frame(_message.Message):
    __slots__ = ("kind", "job_id", "tag", "seq", "dtype", "shape", "total_bytes", "chunk", "chunks", "payload", "party", "error_type", "reason", "culprit", "pad")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Frame.Kind]
        HELLO: _ClassVar[Frame.Kind]
        DATA: _ClassVar[Frame.Kind]
        ABORT: _ClassVar[Frame.Kind]
    KIND_UNSPECIFIED: Frame.Kind
    HELLO: Frame.Kind
    DATA: Frame.Kind
    ABORT: Frame.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CULPRIT_FIELD_NUMBER: _ClassVar[int]
    PAD_FIELD_NUMBER: _ClassVar[int]
    kind: Frame.Kind
    job_id: str
    tag: str
    seq: int
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    total_bytes: int
    chunk: int
    chunks: int
    payload: bytes
    party: str
    error_type: str
    reason: str
    culprit: str
    pad: bytes
    def __init__(self, kind: _Optional[_Union[Frame.Kind, str]] = ..., job_id: _Optional[str] = ..., tag: _Optional[str] = ..., seq: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., total_bytes: _Optional[int] = ..., chunk: _Optional[int] = ..., chunks: _Optional[int] = ..., payload: _Optional[bytes] = ..., party: _Optional[str] = ..., error_type: _Optional[str] = ..., reason: _Optional[str] = ..., culprit: _Optional[str] = ..., pad: _Optional[bytes] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("job_id", "analysis", "params", "source", "requester", "recipients", "coordinator", "parties", "signature", "certificate_pem", "signed_at", "signed_source")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    SIGNED_SOURCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    analysis: str
    params: _containers.ScalarMap[str, str]
    source: str
    requester: str
    recipients: _containers.RepeatedScalarFieldContainer[str]
    coordinator: str
    parties: _containers.RepeatedScalarFieldContainer[str]
    signature: bytes
    certificate_pem: str
    signed_at: int
    signed_source: str
    def __init__(self, job_id: _Optional[str] = ..., analysis: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., source: _Optional[str] = ..., requester: _Optional[str] = ..., recipients: _Optional[_Iterable[str]] = ..., coordinator: _Optional[str] = ..., parties: _Optional[_Iterable[str]] = ..., signature: _Optional[bytes] = ..., certificate_pem: _Optional[str] = ..., signed_at: _Optional[int] = ..., signed_source: _Optional[str] = ...) -> None: ...

class WorkerPool(_message.Message):
    __slots__ = ("endpoints", "min_buckets")
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    MIN_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    min_buckets: int
    def __init__(self, endpoints: _Optional[_Iterable[str]] = ..., min_buckets: _Optional[int] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("spec", "workers")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    workers: WorkerPool
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., workers: _Optional[_Union[WorkerPool, _Mapping]] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("accepted", "party", "rule", "error_type", "message", "min_cell_size", "declared", "join_salt_fingerprint", "min_contributors", "max_dominance", "workers")
    class DeclaredEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_CELL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DECLARED_FIELD_NUMBER: _ClassVar[int]
    JOIN_SALT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MIN_CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    MAX_DOMINANCE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    party: str
    rule: str
    error_type: str
    message: str
    min_cell_size: int
    declared: _containers.ScalarMap[str, str]
    join_salt_fingerprint: str
    min_contributors: int
    max_dominance: float
    workers: WorkerPool
    def __init__(self, accepted: _Optional[bool] = ..., party: _Optional[str] = ..., rule: _Optional[str] = ..., error_type: _Optional[str] = ..., message: _Optional[str] = ..., min_cell_size: _Optional[int] = ..., declared: _Optional[_Mapping[str, str]] = ..., join_salt_fingerprint: _Optional[str] = ..., min_contributors: _Optional[int] = ..., max_dominance: _Optional[float] = ..., workers: _Optional[_Union[WorkerPool, _Mapping]] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("job_id", "min_cell_size", "declared", "min_contributors", "max_dominance", "workers", "buckets")
    class DeclaredEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class WorkersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: WorkerPool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[WorkerPool, _Mapping]] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_CELL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DECLARED_FIELD_NUMBER: _ClassVar[int]
    MIN_CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    MAX_DOMINANCE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    min_cell_size: int
    declared: _containers.ScalarMap[str, str]
    min_contributors: int
    max_dominance: float
    workers: _containers.MessageMap[str, WorkerPool]
    buckets: int
    def __init__(self, job_id: _Optional[str] = ..., min_cell_size: _Optional[int] = ..., declared: _Optional[_Mapping[str, str]] = ..., min_contributors: _Optional[int] = ..., max_dominance: _Optional[float] = ..., workers: _Optional[_Mapping[str, WorkerPool]] = ..., buckets: _Optional[int] = ...) -> None: ...

class PeerCancelRequest(_message.Message):
    __slots__ = ("job_id", "why", "reason", "party", "rule", "error_type")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    why: str
    reason: str
    party: str
    rule: str
    error_type: str
    def __init__(self, job_id: _Optional[str] = ..., why: _Optional[str] = ..., reason: _Optional[str] = ..., party: _Optional[str] = ..., rule: _Optional[str] = ..., error_type: _Optional[str] = ...) -> None: ...

class PeerAck(_message.Message):
    __slots__ = ("ok", "message")
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    message: str
    def __init__(self, ok: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class AuditHead(_message.Message):
    __slots__ = ("party", "records", "head", "time", "signature", "certificate_pem", "job_id")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    party: str
    records: int
    head: str
    time: str
    signature: bytes
    certificate_pem: str
    job_id: str
    def __init__(self, party: _Optional[str] = ..., records: _Optional[int] = ..., head: _Optional[str] = ..., time: _Optional[str] = ..., signature: _Optional[bytes] = ..., certificate_pem: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...
