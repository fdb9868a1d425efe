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
    __slots__ = ("name", "provider", "provider_model", "input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok", "context_window", "supports_tools", "supports_vision", "supports_json", "supports_streaming", "quality_prior", "reasoning_usd_per_mtok", "supported_features", "regions", "max_output_tokens")
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
    SUPPORTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
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
    supported_features: int
    regions: _containers.RepeatedScalarFieldContainer[str]
    max_output_tokens: int
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[str] = ..., provider_model: _Optional[str] = ..., input_usd_per_mtok: _Optional[float] = ..., output_usd_per_mtok: _Optional[float] = ..., cached_input_usd_per_mtok: _Optional[float] = ..., context_window: _Optional[int] = ..., supports_tools: _Optional[bool] = ..., supports_vision: _Optional[bool] = ..., supports_json: _Optional[bool] = ..., supports_streaming: _Optional[bool] = ..., quality_prior: _Optional[float] = ..., reasoning_usd_per_mtok: _Optional[float] = ..., supported_features: _Optional[int] = ..., regions: _Optional[_Iterable[str]] = ..., max_output_tokens: _Optional[int] = ...) -> None: ...

class ArmState(_message.Message):
    __slots__ = ("model", "pulls", "reward_sum", "reward_sq_sum", "alpha", "beta", "a_inv", "b", "mean_cost_usd", "mean_latency_ms")
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
    def __init__(self, model: _Optional[str] = ..., pulls: _Optional[float] = ..., reward_sum: _Optional[float] = ..., reward_sq_sum: _Optional[float] = ..., alpha: _Optional[float] = ..., beta: _Optional[float] = ..., a_inv: _Optional[_Iterable[float]] = ..., b: _Optional[_Iterable[float]] = ..., mean_cost_usd: _Optional[float] = ..., mean_latency_ms: _Optional[float] = ...) -> None: ...

class RewardWeights(_message.Message):
    __slots__ = ("cost_weight", "latency_weight")
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    cost_weight: float
    latency_weight: float
    def __init__(self, cost_weight: _Optional[float] = ..., latency_weight: _Optional[float] = ...) -> None: ...

class TenantArms(_message.Message):
    __slots__ = ("tenant", "arms")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    arms: _containers.RepeatedCompositeFieldContainer[ArmState]
    def __init__(self, tenant: _Optional[str] = ..., arms: _Optional[_Iterable[_Union[ArmState, _Mapping]]] = ...) -> None: ...

class RoutePolicy(_message.Message):
    __slots__ = ("name", "kind", "candidates", "static_weights", "weights", "quality_floor", "exploration", "arms", "tenant_arms", "feature_dim", "semantic", "known_cost", "epsilon", "artifact_digest", "artifact_training")
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
    SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    KNOWN_COST_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_TRAINING_FIELD_NUMBER: _ClassVar[int]
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
    semantic: SemanticProjection
    known_cost: bool
    epsilon: float
    artifact_digest: str
    artifact_training: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[PolicyKind, str]] = ..., candidates: _Optional[_Iterable[str]] = ..., static_weights: _Optional[_Iterable[float]] = ..., weights: _Optional[_Union[RewardWeights, _Mapping]] = ..., quality_floor: _Optional[float] = ..., exploration: _Optional[float] = ..., arms: _Optional[_Iterable[_Union[ArmState, _Mapping]]] = ..., tenant_arms: _Optional[_Iterable[_Union[TenantArms, _Mapping]]] = ..., feature_dim: _Optional[int] = ..., semantic: _Optional[_Union[SemanticProjection, _Mapping]] = ..., known_cost: _Optional[bool] = ..., epsilon: _Optional[float] = ..., artifact_digest: _Optional[str] = ..., artifact_training: _Optional[str] = ...) -> None: ...

class SemanticProjection(_message.Message):
    __slots__ = ("model", "matrix", "offset", "digest")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MATRIX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    model: str
    matrix: _containers.RepeatedScalarFieldContainer[float]
    offset: _containers.RepeatedScalarFieldContainer[float]
    digest: str
    def __init__(self, model: _Optional[str] = ..., matrix: _Optional[_Iterable[float]] = ..., offset: _Optional[_Iterable[float]] = ..., digest: _Optional[str] = ...) -> None: ...

class TenantPolicy(_message.Message):
    __slots__ = ("tenant", "allowed_models", "denied_models", "regions")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DENIED_MODELS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    denied_models: _containers.RepeatedScalarFieldContainer[str]
    regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., allowed_models: _Optional[_Iterable[str]] = ..., denied_models: _Optional[_Iterable[str]] = ..., regions: _Optional[_Iterable[str]] = ...) -> None: ...

class Exclusion(_message.Message):
    __slots__ = ("model", "reason", "until")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    until: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., reason: _Optional[str] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PolicySnapshot(_message.Message):
    __slots__ = ("version", "generated_at", "config_digest", "models", "routes", "tenants", "exclusions", "default_route")
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
    def __init__(self, version: _Optional[int] = ..., generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., config_digest: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelSpec, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[RoutePolicy, _Mapping]]] = ..., tenants: _Optional[_Iterable[_Union[TenantPolicy, _Mapping]]] = ..., exclusions: _Optional[_Iterable[_Union[Exclusion, _Mapping]]] = ..., default_route: _Optional[str] = ...) -> None: ...

class WatchPolicyRequest(_message.Message):
    __slots__ = ("replica_id", "known_version")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    known_version: int
    def __init__(self, replica_id: _Optional[str] = ..., known_version: _Optional[int] = ...) -> None: ...

class WatchPolicyResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: PolicySnapshot
    def __init__(self, snapshot: _Optional[_Union[PolicySnapshot, _Mapping]] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("tenant", "model", "messages", "params", "stream", "features")
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
    def __init__(self, tenant: _Optional[str] = ..., model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ..., params: _Optional[_Union[_chat_pb2.GenerationParams, _Mapping]] = ..., stream: _Optional[bool] = ..., features: _Optional[_Union[_chat_pb2.RequestFeatures, _Mapping]] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: _chat_pb2.Decision
    def __init__(self, decision: _Optional[_Union[_chat_pb2.Decision, _Mapping]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("decision", "decided_by", "decided_at", "tenant")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    decision: _chat_pb2.Decision
    decided_by: str
    decided_at: _timestamp_pb2.Timestamp
    tenant: str
    def __init__(self, decision: _Optional[_Union[_chat_pb2.Decision, _Mapping]] = ..., decided_by: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...
