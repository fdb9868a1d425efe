import datetime

from atp.common.v1 import chat_pb2 as _chat_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObservationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBSERVATION_STATUS_UNSPECIFIED: _ClassVar[ObservationStatus]
    OBSERVATION_STATUS_OK: _ClassVar[ObservationStatus]
    OBSERVATION_STATUS_ERROR: _ClassVar[ObservationStatus]
    OBSERVATION_STATUS_PARTIAL: _ClassVar[ObservationStatus]
    OBSERVATION_STATUS_CANCELLED: _ClassVar[ObservationStatus]
OBSERVATION_STATUS_UNSPECIFIED: ObservationStatus
OBSERVATION_STATUS_OK: ObservationStatus
OBSERVATION_STATUS_ERROR: ObservationStatus
OBSERVATION_STATUS_PARTIAL: ObservationStatus
OBSERVATION_STATUS_CANCELLED: ObservationStatus

class Observation(_message.Message):
    __slots__ = ("observation_id", "request_id", "tenant", "decision", "model", "provider", "prompt_hash", "prompt_text", "usage", "cost_usd", "latency_ms", "time_to_first_token_ms", "provider_ms", "status", "error_class", "finish_reason", "attempts", "started_at", "finished_at", "replica_id", "trace_id", "key_id", "end_user", "tags", "deployment", "region", "dialect", "cache_hit", "saved_cost_usd", "cached_decision_id")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROMPT_HASH_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    END_USER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    SAVED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    CACHED_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    observation_id: str
    request_id: str
    tenant: str
    decision: _chat_pb2.Decision
    model: str
    provider: str
    prompt_hash: str
    prompt_text: str
    usage: _chat_pb2.Usage
    cost_usd: float
    latency_ms: float
    time_to_first_token_ms: float
    provider_ms: float
    status: ObservationStatus
    error_class: str
    finish_reason: str
    attempts: int
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    replica_id: str
    trace_id: str
    key_id: str
    end_user: str
    tags: _containers.ScalarMap[str, str]
    deployment: str
    region: str
    dialect: str
    cache_hit: bool
    saved_cost_usd: float
    cached_decision_id: str
    def __init__(self, observation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., tenant: _Optional[str] = ..., decision: _Optional[_Union[_chat_pb2.Decision, _Mapping]] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., prompt_hash: _Optional[str] = ..., prompt_text: _Optional[str] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., latency_ms: _Optional[float] = ..., time_to_first_token_ms: _Optional[float] = ..., provider_ms: _Optional[float] = ..., status: _Optional[_Union[ObservationStatus, str]] = ..., error_class: _Optional[str] = ..., finish_reason: _Optional[str] = ..., attempts: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replica_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., key_id: _Optional[str] = ..., end_user: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., deployment: _Optional[str] = ..., region: _Optional[str] = ..., dialect: _Optional[str] = ..., cache_hit: _Optional[bool] = ..., saved_cost_usd: _Optional[float] = ..., cached_decision_id: _Optional[str] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[Observation]
    def __init__(self, observations: _Optional[_Iterable[_Union[Observation, _Mapping]]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("stored", "duplicates")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicates: int
    def __init__(self, stored: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("decision_id", "tenant", "score", "label", "comment", "source")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    tenant: str
    score: float
    label: str
    comment: str
    source: str
    def __init__(self, decision_id: _Optional[str] = ..., tenant: _Optional[str] = ..., score: _Optional[float] = ..., label: _Optional[str] = ..., comment: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("feedback_id", "joined")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    joined: bool
    def __init__(self, feedback_id: _Optional[str] = ..., joined: _Optional[bool] = ...) -> None: ...

class RewardEvent(_message.Message):
    __slots__ = ("cursor", "decision_id", "tenant", "route", "model", "policy", "reward", "quality", "cost_usd", "latency_ms", "propensity", "features", "correction", "previous_reward", "previous_quality", "at")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REWARD_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_QUALITY_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    decision_id: str
    tenant: str
    route: str
    model: str
    policy: str
    reward: float
    quality: float
    cost_usd: float
    latency_ms: float
    propensity: float
    features: _containers.RepeatedScalarFieldContainer[float]
    correction: bool
    previous_reward: float
    previous_quality: float
    at: _timestamp_pb2.Timestamp
    def __init__(self, cursor: _Optional[int] = ..., decision_id: _Optional[str] = ..., tenant: _Optional[str] = ..., route: _Optional[str] = ..., model: _Optional[str] = ..., policy: _Optional[str] = ..., reward: _Optional[float] = ..., quality: _Optional[float] = ..., cost_usd: _Optional[float] = ..., latency_ms: _Optional[float] = ..., propensity: _Optional[float] = ..., features: _Optional[_Iterable[float]] = ..., correction: _Optional[bool] = ..., previous_reward: _Optional[float] = ..., previous_quality: _Optional[float] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchRewardsRequest(_message.Message):
    __slots__ = ("cursor", "max_batch")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    max_batch: int
    def __init__(self, cursor: _Optional[int] = ..., max_batch: _Optional[int] = ...) -> None: ...

class WatchRewardsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RewardEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[RewardEvent, _Mapping]]] = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("tenant", "start", "end", "group_by", "bucket_seconds")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    group_by: _containers.RepeatedScalarFieldContainer[str]
    bucket_seconds: int
    def __init__(self, tenant: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_by: _Optional[_Iterable[str]] = ..., bucket_seconds: _Optional[int] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("tenant", "route", "model", "requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "mean_latency_ms", "bucket_start", "key_id", "end_user", "deployment", "tag_key", "tag_value", "cost_nano_usd")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_START_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    END_USER_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    TAG_KEY_FIELD_NUMBER: _ClassVar[int]
    TAG_VALUE_FIELD_NUMBER: _ClassVar[int]
    COST_NANO_USD_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: str
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    mean_latency_ms: float
    bucket_start: _timestamp_pb2.Timestamp
    key_id: str
    end_user: str
    deployment: str
    tag_key: str
    tag_value: str
    cost_nano_usd: int
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[str] = ..., model: _Optional[str] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ..., mean_latency_ms: _Optional[float] = ..., bucket_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ..., end_user: _Optional[str] = ..., deployment: _Optional[str] = ..., tag_key: _Optional[str] = ..., tag_value: _Optional[str] = ..., cost_nano_usd: _Optional[int] = ...) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ...) -> None: ...

class ListObservationsRequest(_message.Message):
    __slots__ = ("tenant", "limit", "before", "before_observation_id", "model", "route", "status", "after")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    limit: int
    before: _timestamp_pb2.Timestamp
    before_observation_id: str
    model: str
    route: str
    status: ObservationStatus
    after: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[str] = ..., limit: _Optional[int] = ..., before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before_observation_id: _Optional[str] = ..., model: _Optional[str] = ..., route: _Optional[str] = ..., status: _Optional[_Union[ObservationStatus, str]] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListObservationsResponse(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[Observation]
    def __init__(self, observations: _Optional[_Iterable[_Union[Observation, _Mapping]]] = ...) -> None: ...

class ArmStats(_message.Message):
    __slots__ = ("route", "model", "tenant", "pulls", "reward_sum", "reward_sq_sum", "quality_sum", "cost_sum", "latency_sum")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PULLS_FIELD_NUMBER: _ClassVar[int]
    REWARD_SUM_FIELD_NUMBER: _ClassVar[int]
    REWARD_SQ_SUM_FIELD_NUMBER: _ClassVar[int]
    QUALITY_SUM_FIELD_NUMBER: _ClassVar[int]
    COST_SUM_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SUM_FIELD_NUMBER: _ClassVar[int]
    route: str
    model: str
    tenant: str
    pulls: float
    reward_sum: float
    reward_sq_sum: float
    quality_sum: float
    cost_sum: float
    latency_sum: float
    def __init__(self, route: _Optional[str] = ..., model: _Optional[str] = ..., tenant: _Optional[str] = ..., pulls: _Optional[float] = ..., reward_sum: _Optional[float] = ..., reward_sq_sum: _Optional[float] = ..., quality_sum: _Optional[float] = ..., cost_sum: _Optional[float] = ..., latency_sum: _Optional[float] = ...) -> None: ...

class GetArmStatsRequest(_message.Message):
    __slots__ = ("route",)
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    route: str
    def __init__(self, route: _Optional[str] = ...) -> None: ...

class GetArmStatsResponse(_message.Message):
    __slots__ = ("arms", "cursor")
    ARMS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    arms: _containers.RepeatedCompositeFieldContainer[ArmStats]
    cursor: int
    def __init__(self, arms: _Optional[_Iterable[_Union[ArmStats, _Mapping]]] = ..., cursor: _Optional[int] = ...) -> None: ...

class GetDecisionRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class GetDecisionResponse(_message.Message):
    __slots__ = ("decision", "tenant", "replica_id", "decided_at")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    decision: _chat_pb2.Decision
    tenant: str
    replica_id: str
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, decision: _Optional[_Union[_chat_pb2.Decision, _Mapping]] = ..., tenant: _Optional[str] = ..., replica_id: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListFeedbackRequest(_message.Message):
    __slots__ = ("decision_id", "tenant")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    tenant: str
    def __init__(self, decision_id: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class FeedbackRecord(_message.Message):
    __slots__ = ("feedback_id", "score", "label", "comment", "source", "created_at")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    score: float
    label: str
    comment: str
    source: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, feedback_id: _Optional[str] = ..., score: _Optional[float] = ..., label: _Optional[str] = ..., comment: _Optional[str] = ..., source: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListFeedbackResponse(_message.Message):
    __slots__ = ("feedback",)
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    feedback: _containers.RepeatedCompositeFieldContainer[FeedbackRecord]
    def __init__(self, feedback: _Optional[_Iterable[_Union[FeedbackRecord, _Mapping]]] = ...) -> None: ...

class GetStoreStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStoreStatusResponse(_message.Message):
    __slots__ = ("backend", "reachable", "error", "ingest_pending")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INGEST_PENDING_FIELD_NUMBER: _ClassVar[int]
    backend: str
    reachable: bool
    error: str
    ingest_pending: int
    def __init__(self, backend: _Optional[str] = ..., reachable: _Optional[bool] = ..., error: _Optional[str] = ..., ingest_pending: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("audit_id", "at", "actor_key_id", "actor_role", "actor_tenant", "action", "tenant", "target", "before_json", "after_json", "seq")
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TENANT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BEFORE_JSON_FIELD_NUMBER: _ClassVar[int]
    AFTER_JSON_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    audit_id: str
    at: _timestamp_pb2.Timestamp
    actor_key_id: str
    actor_role: str
    actor_tenant: str
    action: str
    tenant: str
    target: str
    before_json: str
    after_json: str
    seq: int
    def __init__(self, audit_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor_key_id: _Optional[str] = ..., actor_role: _Optional[str] = ..., actor_tenant: _Optional[str] = ..., action: _Optional[str] = ..., tenant: _Optional[str] = ..., target: _Optional[str] = ..., before_json: _Optional[str] = ..., after_json: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class RecordAuditRequest(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: AuditEntry
    def __init__(self, entry: _Optional[_Union[AuditEntry, _Mapping]] = ...) -> None: ...

class RecordAuditResponse(_message.Message):
    __slots__ = ("seq", "duplicate")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    duplicate: bool
    def __init__(self, seq: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("tenant", "start", "end", "limit", "before_seq")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    limit: int
    before_seq: int
    def __init__(self, tenant: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., before_seq: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...
