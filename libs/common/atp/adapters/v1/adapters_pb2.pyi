from atp.common.v1 import chat_pb2 as _chat_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_TOOL_CALLS: _ClassVar[FinishReason]
    FINISH_REASON_CONTENT_FILTER: _ClassVar[FinishReason]
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_TOOL_CALLS: FinishReason
FINISH_REASON_CONTENT_FILTER: FinishReason

class GenerateRequest(_message.Message):
    __slots__ = ("request_id", "tenant", "model", "messages", "params", "stream", "include_usage", "key_id", "end_user", "tags", "dialect", "regions", "cache")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_USAGE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    END_USER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tenant: str
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    params: _chat_pb2.GenerationParams
    stream: bool
    include_usage: bool
    key_id: str
    end_user: str
    tags: _containers.ScalarMap[str, str]
    dialect: str
    regions: _containers.RepeatedScalarFieldContainer[str]
    cache: str
    def __init__(self, request_id: _Optional[str] = ..., tenant: _Optional[str] = ..., model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ..., params: _Optional[_Union[_chat_pb2.GenerationParams, _Mapping]] = ..., stream: _Optional[bool] = ..., include_usage: _Optional[bool] = ..., key_id: _Optional[str] = ..., end_user: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., dialect: _Optional[str] = ..., regions: _Optional[_Iterable[str]] = ..., cache: _Optional[str] = ...) -> None: ...

class GenerateHeader(_message.Message):
    __slots__ = ("decision_id", "model", "provider", "route", "request_id", "created", "system_fingerprint", "service_tier", "provider_response_id", "deployment", "region", "cache", "cache_expires_at_ms", "cache_saved_cost_usd", "rate_limits")
    class RateLimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    CACHE_EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    model: str
    provider: str
    route: str
    request_id: str
    created: int
    system_fingerprint: str
    service_tier: str
    provider_response_id: str
    deployment: str
    region: str
    cache: str
    cache_expires_at_ms: int
    cache_saved_cost_usd: float
    rate_limits: _containers.ScalarMap[str, str]
    def __init__(self, decision_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., route: _Optional[str] = ..., request_id: _Optional[str] = ..., created: _Optional[int] = ..., system_fingerprint: _Optional[str] = ..., service_tier: _Optional[str] = ..., provider_response_id: _Optional[str] = ..., deployment: _Optional[str] = ..., region: _Optional[str] = ..., cache: _Optional[str] = ..., cache_expires_at_ms: _Optional[int] = ..., cache_saved_cost_usd: _Optional[float] = ..., rate_limits: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GenerateCompletion(_message.Message):
    __slots__ = ("finish_reason", "usage", "cost_usd", "latency_ms", "provider_ms", "time_to_first_token_ms", "choice_finish_reasons", "stop_sequence", "provider_fields")
    class ProviderFieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    CHOICE_FINISH_REASONS_FIELD_NUMBER: _ClassVar[int]
    STOP_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELDS_FIELD_NUMBER: _ClassVar[int]
    finish_reason: FinishReason
    usage: _chat_pb2.Usage
    cost_usd: float
    latency_ms: float
    provider_ms: float
    time_to_first_token_ms: float
    choice_finish_reasons: _containers.RepeatedScalarFieldContainer[FinishReason]
    stop_sequence: str
    provider_fields: _containers.ScalarMap[str, bytes]
    def __init__(self, finish_reason: _Optional[_Union[FinishReason, str]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., latency_ms: _Optional[float] = ..., provider_ms: _Optional[float] = ..., time_to_first_token_ms: _Optional[float] = ..., choice_finish_reasons: _Optional[_Iterable[_Union[FinishReason, str]]] = ..., stop_sequence: _Optional[str] = ..., provider_fields: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class GenerateError(_message.Message):
    __slots__ = ("code", "message", "type")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    type: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("header", "deltas", "completion", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: GenerateHeader
    deltas: _containers.RepeatedCompositeFieldContainer[_chat_pb2.Delta]
    completion: GenerateCompletion
    error: GenerateError
    def __init__(self, header: _Optional[_Union[GenerateHeader, _Mapping]] = ..., deltas: _Optional[_Iterable[_Union[_chat_pb2.Delta, _Mapping]]] = ..., completion: _Optional[_Union[GenerateCompletion, _Mapping]] = ..., error: _Optional[_Union[GenerateError, _Mapping]] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: GenerateRequest
    def __init__(self, request: _Optional[_Union[GenerateRequest, _Mapping]] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: GenerateResponse
    def __init__(self, response: _Optional[_Union[GenerateResponse, _Mapping]] = ...) -> None: ...

class CountTokensRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: GenerateRequest
    def __init__(self, request: _Optional[_Union[GenerateRequest, _Mapping]] = ...) -> None: ...

class CountTokensResponse(_message.Message):
    __slots__ = ("input_tokens", "model", "provider", "deployment", "decision_id")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    model: str
    provider: str
    deployment: str
    decision_id: str
    def __init__(self, input_tokens: _Optional[int] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., deployment: _Optional[str] = ..., decision_id: _Optional[str] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("request_id", "tenant", "model", "inputs", "dimensions", "user", "key_id", "end_user", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    END_USER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tenant: str
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[EmbedInput]
    dimensions: int
    user: str
    key_id: str
    end_user: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., tenant: _Optional[str] = ..., model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[EmbedInput, _Mapping]]] = ..., dimensions: _Optional[int] = ..., user: _Optional[str] = ..., key_id: _Optional[str] = ..., end_user: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EmbedInput(_message.Message):
    __slots__ = ("text", "tokens")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    text: str
    tokens: TokenIds
    def __init__(self, text: _Optional[str] = ..., tokens: _Optional[_Union[TokenIds, _Mapping]] = ...) -> None: ...

class TokenIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("header", "embeddings", "usage", "cost_usd", "latency_ms", "provider_ms")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MS_FIELD_NUMBER: _ClassVar[int]
    header: GenerateHeader
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    usage: _chat_pb2.Usage
    cost_usd: float
    latency_ms: float
    provider_ms: float
    def __init__(self, header: _Optional[_Union[GenerateHeader, _Mapping]] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., latency_ms: _Optional[float] = ..., provider_ms: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("tenant", "key_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    key_id: str
    def __init__(self, tenant: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "provider", "kind", "context_window", "capabilities")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    provider: str
    kind: str
    context_window: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., provider: _Optional[str] = ..., kind: _Optional[str] = ..., context_window: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("replica_id", "queued_observations", "spool_bytes")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_BYTES_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    queued_observations: int
    spool_bytes: int
    def __init__(self, replica_id: _Optional[str] = ..., queued_observations: _Optional[int] = ..., spool_bytes: _Optional[int] = ...) -> None: ...

class CacheHit(_message.Message):
    __slots__ = ("request", "stored", "saved_cost_usd", "started_at_unix_ns", "latency_ms", "observation_id")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    SAVED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    request: GenerateRequest
    stored: GenerateHeader
    saved_cost_usd: float
    started_at_unix_ns: int
    latency_ms: float
    observation_id: str
    def __init__(self, request: _Optional[_Union[GenerateRequest, _Mapping]] = ..., stored: _Optional[_Union[GenerateHeader, _Mapping]] = ..., saved_cost_usd: _Optional[float] = ..., started_at_unix_ns: _Optional[int] = ..., latency_ms: _Optional[float] = ..., observation_id: _Optional[str] = ...) -> None: ...

class ReportCacheHitsRequest(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[CacheHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[CacheHit, _Mapping]]] = ...) -> None: ...

class ReportCacheHitsResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...

class MultiplexRequest(_message.Message):
    __slots__ = ("calls", "cancels", "credits")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    CANCELS_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[MultiplexCall]
    cancels: _containers.RepeatedScalarFieldContainer[int]
    credits: _containers.RepeatedCompositeFieldContainer[MultiplexCredit]
    def __init__(self, calls: _Optional[_Iterable[_Union[MultiplexCall, _Mapping]]] = ..., cancels: _Optional[_Iterable[int]] = ..., credits: _Optional[_Iterable[_Union[MultiplexCredit, _Mapping]]] = ...) -> None: ...

class MultiplexCall(_message.Message):
    __slots__ = ("id", "request", "timeout_ms", "whole", "window_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: int
    request: GenerateRequest
    timeout_ms: int
    whole: bool
    window_bytes: int
    def __init__(self, id: _Optional[int] = ..., request: _Optional[_Union[GenerateRequest, _Mapping]] = ..., timeout_ms: _Optional[int] = ..., whole: _Optional[bool] = ..., window_bytes: _Optional[int] = ...) -> None: ...

class MultiplexCredit(_message.Message):
    __slots__ = ("id", "bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    id: int
    bytes: int
    def __init__(self, id: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class MultiplexResponse(_message.Message):
    __slots__ = ("items", "closing")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CLOSING_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[MultiplexItem]
    closing: bool
    def __init__(self, items: _Optional[_Iterable[_Union[MultiplexItem, _Mapping]]] = ..., closing: _Optional[bool] = ...) -> None: ...

class MultiplexItem(_message.Message):
    __slots__ = ("id", "message", "end")
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    id: int
    message: GenerateResponse
    end: MultiplexEnd
    def __init__(self, id: _Optional[int] = ..., message: _Optional[_Union[GenerateResponse, _Mapping]] = ..., end: _Optional[_Union[MultiplexEnd, _Mapping]] = ...) -> None: ...

class MultiplexEnd(_message.Message):
    __slots__ = ("code", "details", "trailers")
    class TrailersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    code: int
    details: str
    trailers: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[int] = ..., details: _Optional[str] = ..., trailers: _Optional[_Mapping[str, str]] = ...) -> None: ...
