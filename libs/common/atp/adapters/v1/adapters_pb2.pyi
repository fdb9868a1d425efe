from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

from atp.common.v1 import chat_pb2 as _chat_pb2

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
    __slots__ = ("include_usage", "messages", "model", "params", "request_id", "stream", "tenant")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_USAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tenant: str
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    params: _chat_pb2.GenerationParams
    stream: bool
    include_usage: bool
    def __init__(
        self,
        request_id: str | None = ...,
        tenant: str | None = ...,
        model: str | None = ...,
        messages: _Iterable[_chat_pb2.ChatMessage | _Mapping] | None = ...,
        params: _chat_pb2.GenerationParams | _Mapping | None = ...,
        stream: bool | None = ...,
        include_usage: bool | None = ...,
    ) -> None: ...

class GenerateHeader(_message.Message):
    __slots__ = ("created", "decision_id", "model", "provider", "request_id", "route")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    model: str
    provider: str
    route: str
    request_id: str
    created: int
    def __init__(
        self,
        decision_id: str | None = ...,
        model: str | None = ...,
        provider: str | None = ...,
        route: str | None = ...,
        request_id: str | None = ...,
        created: int | None = ...,
    ) -> None: ...

class GenerateCompletion(_message.Message):
    __slots__ = ("cost_usd", "finish_reason", "latency_ms", "provider_ms", "time_to_first_token_ms", "usage")
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    finish_reason: FinishReason
    usage: _chat_pb2.Usage
    cost_usd: float
    latency_ms: float
    provider_ms: float
    time_to_first_token_ms: float
    def __init__(
        self,
        finish_reason: FinishReason | str | None = ...,
        usage: _chat_pb2.Usage | _Mapping | None = ...,
        cost_usd: float | None = ...,
        latency_ms: float | None = ...,
        provider_ms: float | None = ...,
        time_to_first_token_ms: float | None = ...,
    ) -> None: ...

class GenerateError(_message.Message):
    __slots__ = ("code", "message", "type")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    type: str
    def __init__(self, code: str | None = ..., message: str | None = ..., type: str | None = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("completion", "deltas", "error", "header")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: GenerateHeader
    deltas: _containers.RepeatedCompositeFieldContainer[_chat_pb2.Delta]
    completion: GenerateCompletion
    error: GenerateError
    def __init__(
        self,
        header: GenerateHeader | _Mapping | None = ...,
        deltas: _Iterable[_chat_pb2.Delta | _Mapping] | None = ...,
        completion: GenerateCompletion | _Mapping | None = ...,
        error: GenerateError | _Mapping | None = ...,
    ) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("context_window", "id", "kind", "provider")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    id: str
    provider: str
    kind: str
    context_window: int
    def __init__(
        self,
        id: str | None = ...,
        provider: str | None = ...,
        kind: str | None = ...,
        context_window: int | None = ...,
    ) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Iterable[ModelInfo | _Mapping] | None = ...) -> None: ...
