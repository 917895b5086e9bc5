from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PREPARED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_REFUSED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PREPARED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_REFUSED: JobState

class SubmitRequest(_message.Message):
    __slots__ = ("job_id", "analysis", "params", "source", "recipients", "signature", "certificate_pem", "signed_at")
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
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    analysis: str
    params: _containers.ScalarMap[str, str]
    source: str
    recipients: _containers.RepeatedScalarFieldContainer[str]
    signature: bytes
    certificate_pem: str
    signed_at: int
    def __init__(self, job_id: _Optional[str] = ..., analysis: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., source: _Optional[str] = ..., recipients: _Optional[_Iterable[str]] = ..., signature: _Optional[bytes] = ..., certificate_pem: _Optional[str] = ..., signed_at: _Optional[int] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("type", "message", "party", "rule")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    party: str
    rule: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., party: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "state", "analysis", "party", "coordinator", "requester", "progress", "stage", "result_json", "error", "bytes_sent", "rounds")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    analysis: str
    party: str
    coordinator: str
    requester: str
    progress: float
    stage: str
    result_json: str
    error: JobError
    bytes_sent: int
    rounds: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., analysis: _Optional[str] = ..., party: _Optional[str] = ..., coordinator: _Optional[str] = ..., requester: _Optional[str] = ..., progress: _Optional[float] = ..., stage: _Optional[str] = ..., result_json: _Optional[str] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., bytes_sent: _Optional[int] = ..., rounds: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "seq", "state", "progress", "stage", "message", "party", "time_unix", "error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seq: int
    state: JobState
    progress: float
    stage: str
    message: str
    party: str
    time_unix: float
    error: JobError
    def __init__(self, job_id: _Optional[str] = ..., seq: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[float] = ..., stage: _Optional[str] = ..., message: _Optional[str] = ..., party: _Optional[str] = ..., time_unix: _Optional[float] = ..., error: _Optional[_Union[JobError, _Mapping]] = ...) -> None: ...

class ListAnalysesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AnalysisParam(_message.Message):
    __slots__ = ("name", "type", "required", "default", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    required: bool
    default: str
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., required: _Optional[bool] = ..., default: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class AnalysisInfo(_message.Message):
    __slots__ = ("name", "summary", "leakage", "cost", "params", "allowed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    LEAKAGE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    leakage: str
    cost: str
    params: _containers.RepeatedCompositeFieldContainer[AnalysisParam]
    allowed: bool
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., leakage: _Optional[str] = ..., cost: _Optional[str] = ..., params: _Optional[_Iterable[_Union[AnalysisParam, _Mapping]]] = ..., allowed: _Optional[bool] = ...) -> None: ...

class ListAnalysesResponse(_message.Message):
    __slots__ = ("analyses",)
    ANALYSES_FIELD_NUMBER: _ClassVar[int]
    analyses: _containers.RepeatedCompositeFieldContainer[AnalysisInfo]
    def __init__(self, analyses: _Optional[_Iterable[_Union[AnalysisInfo, _Mapping]]] = ...) -> None: ...

class ServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("party", "version", "active_jobs", "job_threads")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_JOBS_FIELD_NUMBER: _ClassVar[int]
    JOB_THREADS_FIELD_NUMBER: _ClassVar[int]
    party: str
    version: str
    active_jobs: int
    job_threads: int
    def __init__(self, party: _Optional[str] = ..., version: _Optional[str] = ..., active_jobs: _Optional[int] = ..., job_threads: _Optional[int] = ...) -> None: ...
