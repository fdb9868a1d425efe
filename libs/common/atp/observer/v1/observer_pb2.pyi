import datetime
from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

from atp.common.v1 import chat_pb2 as _chat_pb2

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
    __slots__ = (
        "attempts",
        "cost_usd",
        "decision",
        "error_class",
        "finish_reason",
        "finished_at",
        "latency_ms",
        "model",
        "observation_id",
        "prompt_hash",
        "prompt_text",
        "provider",
        "provider_ms",
        "replica_id",
        "request_id",
        "started_at",
        "status",
        "tenant",
        "time_to_first_token_ms",
        "usage",
    )
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
    def __init__(
        self,
        observation_id: str | None = ...,
        request_id: str | None = ...,
        tenant: str | None = ...,
        decision: _chat_pb2.Decision | _Mapping | None = ...,
        model: str | None = ...,
        provider: str | None = ...,
        prompt_hash: str | None = ...,
        prompt_text: str | None = ...,
        usage: _chat_pb2.Usage | _Mapping | None = ...,
        cost_usd: float | None = ...,
        latency_ms: float | None = ...,
        time_to_first_token_ms: float | None = ...,
        provider_ms: float | None = ...,
        status: ObservationStatus | str | None = ...,
        error_class: str | None = ...,
        finish_reason: str | None = ...,
        attempts: int | None = ...,
        started_at: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
        finished_at: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
        replica_id: str | None = ...,
    ) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[Observation]
    def __init__(self, observations: _Iterable[Observation | _Mapping] | None = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("duplicates", "stored")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicates: int
    def __init__(self, stored: int | None = ..., duplicates: int | None = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("comment", "decision_id", "label", "score", "source", "tenant")
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
    def __init__(
        self,
        decision_id: str | None = ...,
        tenant: str | None = ...,
        score: float | None = ...,
        label: str | None = ...,
        comment: str | None = ...,
        source: str | None = ...,
    ) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("feedback_id", "joined")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    joined: bool
    def __init__(self, feedback_id: str | None = ..., joined: bool | None = ...) -> None: ...

class RewardEvent(_message.Message):
    __slots__ = (
        "at",
        "correction",
        "cost_usd",
        "cursor",
        "decision_id",
        "features",
        "latency_ms",
        "model",
        "policy",
        "previous_quality",
        "previous_reward",
        "propensity",
        "quality",
        "reward",
        "route",
        "tenant",
    )
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
    def __init__(
        self,
        cursor: int | None = ...,
        decision_id: str | None = ...,
        tenant: str | None = ...,
        route: str | None = ...,
        model: str | None = ...,
        policy: str | None = ...,
        reward: float | None = ...,
        quality: float | None = ...,
        cost_usd: float | None = ...,
        latency_ms: float | None = ...,
        propensity: float | None = ...,
        features: _Iterable[float] | None = ...,
        correction: bool | None = ...,
        previous_reward: float | None = ...,
        previous_quality: float | None = ...,
        at: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
    ) -> None: ...

class WatchRewardsRequest(_message.Message):
    __slots__ = ("cursor", "max_batch")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    max_batch: int
    def __init__(self, cursor: int | None = ..., max_batch: int | None = ...) -> None: ...

class WatchRewardsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RewardEvent]
    def __init__(self, events: _Iterable[RewardEvent | _Mapping] | None = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("end", "group_by", "start", "tenant")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    group_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(
        self,
        tenant: str | None = ...,
        start: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
        end: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
        group_by: _Iterable[str] | None = ...,
    ) -> None: ...

class UsageRow(_message.Message):
    __slots__ = (
        "completion_tokens",
        "cost_usd",
        "errors",
        "mean_latency_ms",
        "model",
        "prompt_tokens",
        "requests",
        "route",
        "tenant",
    )
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: str
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    mean_latency_ms: float
    def __init__(
        self,
        tenant: str | None = ...,
        route: str | None = ...,
        model: str | None = ...,
        requests: int | None = ...,
        errors: int | None = ...,
        prompt_tokens: int | None = ...,
        completion_tokens: int | None = ...,
        cost_usd: float | None = ...,
        mean_latency_ms: float | None = ...,
    ) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    def __init__(self, rows: _Iterable[UsageRow | _Mapping] | None = ...) -> None: ...

class ListObservationsRequest(_message.Message):
    __slots__ = ("before", "limit", "tenant")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    limit: int
    before: _timestamp_pb2.Timestamp
    def __init__(
        self,
        tenant: str | None = ...,
        limit: int | None = ...,
        before: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
    ) -> None: ...

class ListObservationsResponse(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[Observation]
    def __init__(self, observations: _Iterable[Observation | _Mapping] | None = ...) -> None: ...

class ArmStats(_message.Message):
    __slots__ = (
        "cost_sum",
        "latency_sum",
        "model",
        "pulls",
        "quality_sum",
        "reward_sq_sum",
        "reward_sum",
        "route",
        "tenant",
    )
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
    def __init__(
        self,
        route: str | None = ...,
        model: str | None = ...,
        tenant: str | None = ...,
        pulls: float | None = ...,
        reward_sum: float | None = ...,
        reward_sq_sum: float | None = ...,
        quality_sum: float | None = ...,
        cost_sum: float | None = ...,
        latency_sum: float | None = ...,
    ) -> None: ...

class GetArmStatsRequest(_message.Message):
    __slots__ = ("route",)
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    route: str
    def __init__(self, route: str | None = ...) -> None: ...

class GetArmStatsResponse(_message.Message):
    __slots__ = ("arms", "cursor")
    ARMS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    arms: _containers.RepeatedCompositeFieldContainer[ArmStats]
    cursor: int
    def __init__(
        self, arms: _Iterable[ArmStats | _Mapping] | None = ..., cursor: int | None = ...
    ) -> None: ...

class GetDecisionRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: str | None = ...) -> None: ...

class GetDecisionResponse(_message.Message):
    __slots__ = ("decided_at", "decision", "replica_id", "tenant")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    decision: _chat_pb2.Decision
    tenant: str
    replica_id: str
    decided_at: _timestamp_pb2.Timestamp
    def __init__(
        self,
        decision: _chat_pb2.Decision | _Mapping | None = ...,
        tenant: str | None = ...,
        replica_id: str | None = ...,
        decided_at: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
    ) -> None: ...
