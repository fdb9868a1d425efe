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

class PolicyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_KIND_UNSPECIFIED: _ClassVar[PolicyKind]
    POLICY_KIND_STATIC: _ClassVar[PolicyKind]
    POLICY_KIND_CHEAPEST: _ClassVar[PolicyKind]
    POLICY_KIND_THOMPSON: _ClassVar[PolicyKind]
    POLICY_KIND_UCB: _ClassVar[PolicyKind]
    POLICY_KIND_LINUCB: _ClassVar[PolicyKind]

POLICY_KIND_UNSPECIFIED: PolicyKind
POLICY_KIND_STATIC: PolicyKind
POLICY_KIND_CHEAPEST: PolicyKind
POLICY_KIND_THOMPSON: PolicyKind
POLICY_KIND_UCB: PolicyKind
POLICY_KIND_LINUCB: PolicyKind

class ModelSpec(_message.Message):
    __slots__ = (
        "cached_input_usd_per_mtok",
        "context_window",
        "input_usd_per_mtok",
        "name",
        "output_usd_per_mtok",
        "provider",
        "provider_model",
        "quality_prior",
        "reasoning_usd_per_mtok",
        "supports_json",
        "supports_streaming",
        "supports_tools",
        "supports_vision",
    )
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_TOOLS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_VISION_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_JSON_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_STREAMING_FIELD_NUMBER: _ClassVar[int]
    QUALITY_PRIOR_FIELD_NUMBER: _ClassVar[int]
    REASONING_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: str
    provider_model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cached_input_usd_per_mtok: float
    context_window: int
    supports_tools: bool
    supports_vision: bool
    supports_json: bool
    supports_streaming: bool
    quality_prior: float
    reasoning_usd_per_mtok: float
    def __init__(
        self,
        name: str | None = ...,
        provider: str | None = ...,
        provider_model: str | None = ...,
        input_usd_per_mtok: float | None = ...,
        output_usd_per_mtok: float | None = ...,
        cached_input_usd_per_mtok: float | None = ...,
        context_window: int | None = ...,
        supports_tools: bool | None = ...,
        supports_vision: bool | None = ...,
        supports_json: bool | None = ...,
        supports_streaming: bool | None = ...,
        quality_prior: float | None = ...,
        reasoning_usd_per_mtok: float | None = ...,
    ) -> None: ...

class ArmState(_message.Message):
    __slots__ = (
        "a_inv",
        "alpha",
        "b",
        "beta",
        "mean_cost_usd",
        "mean_latency_ms",
        "model",
        "pulls",
        "reward_sq_sum",
        "reward_sum",
    )
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PULLS_FIELD_NUMBER: _ClassVar[int]
    REWARD_SUM_FIELD_NUMBER: _ClassVar[int]
    REWARD_SQ_SUM_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    A_INV_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    MEAN_COST_USD_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    pulls: float
    reward_sum: float
    reward_sq_sum: float
    alpha: float
    beta: float
    a_inv: _containers.RepeatedScalarFieldContainer[float]
    b: _containers.RepeatedScalarFieldContainer[float]
    mean_cost_usd: float
    mean_latency_ms: float
    def __init__(
        self,
        model: str | None = ...,
        pulls: float | None = ...,
        reward_sum: float | None = ...,
        reward_sq_sum: float | None = ...,
        alpha: float | None = ...,
        beta: float | None = ...,
        a_inv: _Iterable[float] | None = ...,
        b: _Iterable[float] | None = ...,
        mean_cost_usd: float | None = ...,
        mean_latency_ms: float | None = ...,
    ) -> None: ...

class RewardWeights(_message.Message):
    __slots__ = ("cost_weight", "latency_weight")
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    cost_weight: float
    latency_weight: float
    def __init__(self, cost_weight: float | None = ..., latency_weight: float | None = ...) -> None: ...

class TenantArms(_message.Message):
    __slots__ = ("arms", "tenant")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    arms: _containers.RepeatedCompositeFieldContainer[ArmState]
    def __init__(
        self, tenant: str | None = ..., arms: _Iterable[ArmState | _Mapping] | None = ...
    ) -> None: ...

class RoutePolicy(_message.Message):
    __slots__ = (
        "arms",
        "candidates",
        "exploration",
        "feature_dim",
        "kind",
        "name",
        "quality_floor",
        "static_weights",
        "tenant_arms",
        "weights",
    )
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    STATIC_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FLOOR_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    TENANT_ARMS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DIM_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: PolicyKind
    candidates: _containers.RepeatedScalarFieldContainer[str]
    static_weights: _containers.RepeatedScalarFieldContainer[float]
    weights: RewardWeights
    quality_floor: float
    exploration: float
    arms: _containers.RepeatedCompositeFieldContainer[ArmState]
    tenant_arms: _containers.RepeatedCompositeFieldContainer[TenantArms]
    feature_dim: int
    def __init__(
        self,
        name: str | None = ...,
        kind: PolicyKind | str | None = ...,
        candidates: _Iterable[str] | None = ...,
        static_weights: _Iterable[float] | None = ...,
        weights: RewardWeights | _Mapping | None = ...,
        quality_floor: float | None = ...,
        exploration: float | None = ...,
        arms: _Iterable[ArmState | _Mapping] | None = ...,
        tenant_arms: _Iterable[TenantArms | _Mapping] | None = ...,
        feature_dim: int | None = ...,
    ) -> None: ...

class TenantPolicy(_message.Message):
    __slots__ = ("allowed_models", "denied_models", "tenant")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DENIED_MODELS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    denied_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(
        self,
        tenant: str | None = ...,
        allowed_models: _Iterable[str] | None = ...,
        denied_models: _Iterable[str] | None = ...,
    ) -> None: ...

class Exclusion(_message.Message):
    __slots__ = ("model", "reason", "until")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    until: _timestamp_pb2.Timestamp
    def __init__(
        self,
        model: str | None = ...,
        reason: str | None = ...,
        until: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
    ) -> None: ...

class PolicySnapshot(_message.Message):
    __slots__ = (
        "config_digest",
        "default_route",
        "exclusions",
        "generated_at",
        "models",
        "routes",
        "tenants",
        "version",
    )
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIONS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ROUTE_FIELD_NUMBER: _ClassVar[int]
    version: int
    generated_at: _timestamp_pb2.Timestamp
    config_digest: str
    models: _containers.RepeatedCompositeFieldContainer[ModelSpec]
    routes: _containers.RepeatedCompositeFieldContainer[RoutePolicy]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantPolicy]
    exclusions: _containers.RepeatedCompositeFieldContainer[Exclusion]
    default_route: str
    def __init__(
        self,
        version: int | None = ...,
        generated_at: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
        config_digest: str | None = ...,
        models: _Iterable[ModelSpec | _Mapping] | None = ...,
        routes: _Iterable[RoutePolicy | _Mapping] | None = ...,
        tenants: _Iterable[TenantPolicy | _Mapping] | None = ...,
        exclusions: _Iterable[Exclusion | _Mapping] | None = ...,
        default_route: str | None = ...,
    ) -> None: ...

class WatchPolicyRequest(_message.Message):
    __slots__ = ("known_version", "replica_id")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    known_version: int
    def __init__(self, replica_id: str | None = ..., known_version: int | None = ...) -> None: ...

class WatchPolicyResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: PolicySnapshot
    def __init__(self, snapshot: PolicySnapshot | _Mapping | None = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("features", "messages", "model", "params", "stream", "tenant")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    params: _chat_pb2.GenerationParams
    stream: bool
    features: _chat_pb2.RequestFeatures
    def __init__(
        self,
        tenant: str | None = ...,
        model: str | None = ...,
        messages: _Iterable[_chat_pb2.ChatMessage | _Mapping] | None = ...,
        params: _chat_pb2.GenerationParams | _Mapping | None = ...,
        stream: bool | None = ...,
        features: _chat_pb2.RequestFeatures | _Mapping | None = ...,
    ) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: _chat_pb2.Decision
    def __init__(self, decision: _chat_pb2.Decision | _Mapping | None = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: str | None = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("decided_at", "decided_by", "decision", "tenant")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    decision: _chat_pb2.Decision
    decided_by: str
    decided_at: _timestamp_pb2.Timestamp
    tenant: str
    def __init__(
        self,
        decision: _chat_pb2.Decision | _Mapping | None = ...,
        decided_by: str | None = ...,
        decided_at: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...,
        tenant: str | None = ...,
    ) -> None: ...
