from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

DESCRIPTOR: _descriptor.FileDescriptor

class ToolCall(_message.Message):
    __slots__ = ("arguments", "function_name", "id", "type")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    function_name: str
    arguments: str
    def __init__(
        self,
        id: str | None = ...,
        type: str | None = ...,
        function_name: str | None = ...,
        arguments: str | None = ...,
    ) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("content", "content_parts_json", "name", "role", "tool_call_id", "tool_calls")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_PARTS_JSON_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    name: str
    tool_call_id: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    content_parts_json: bytes
    def __init__(
        self,
        role: str | None = ...,
        content: str | None = ...,
        name: str | None = ...,
        tool_call_id: str | None = ...,
        tool_calls: _Iterable[ToolCall | _Mapping] | None = ...,
        content_parts_json: bytes | None = ...,
    ) -> None: ...

class GenerationParams(_message.Message):
    __slots__ = (
        "frequency_penalty",
        "max_tokens",
        "presence_penalty",
        "response_format_json",
        "seed",
        "stop",
        "temperature",
        "tool_choice_json",
        "tools_json",
        "top_p",
        "user",
    )
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TOOLS_JSON_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_JSON_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_tokens: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    user: str
    tools_json: bytes
    tool_choice_json: bytes
    response_format_json: bytes
    presence_penalty: float
    frequency_penalty: float
    def __init__(
        self,
        temperature: float | None = ...,
        top_p: float | None = ...,
        max_tokens: int | None = ...,
        stop: _Iterable[str] | None = ...,
        seed: int | None = ...,
        user: str | None = ...,
        tools_json: bytes | None = ...,
        tool_choice_json: bytes | None = ...,
        response_format_json: bytes | None = ...,
        presence_penalty: float | None = ...,
        frequency_penalty: float | None = ...,
    ) -> None: ...

class Usage(_message.Message):
    __slots__ = (
        "cached_prompt_tokens",
        "completion_tokens",
        "estimated",
        "prompt_tokens",
        "reasoning_tokens",
    )
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    reasoning_tokens: int
    estimated: bool
    def __init__(
        self,
        prompt_tokens: int | None = ...,
        completion_tokens: int | None = ...,
        cached_prompt_tokens: int | None = ...,
        reasoning_tokens: int | None = ...,
        estimated: bool | None = ...,
    ) -> None: ...

class Delta(_message.Message):
    __slots__ = ("content", "role", "tool_calls")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    content: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCallDelta]
    role: str
    def __init__(
        self,
        content: str | None = ...,
        tool_calls: _Iterable[ToolCallDelta | _Mapping] | None = ...,
        role: str | None = ...,
    ) -> None: ...

class ToolCallDelta(_message.Message):
    __slots__ = ("arguments", "function_name", "id", "index", "type")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    type: str
    function_name: str
    arguments: str
    def __init__(
        self,
        index: int | None = ...,
        id: str | None = ...,
        type: str | None = ...,
        function_name: str | None = ...,
        arguments: str | None = ...,
    ) -> None: ...

class RequestFeatures(_message.Message):
    __slots__ = (
        "estimated_prompt_tokens",
        "max_output_tokens",
        "needs_json",
        "needs_tools",
        "needs_vision",
        "stream",
        "vector",
    )
    ESTIMATED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_TOOLS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_VISION_FIELD_NUMBER: _ClassVar[int]
    NEEDS_JSON_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    estimated_prompt_tokens: int
    max_output_tokens: int
    needs_tools: bool
    needs_vision: bool
    needs_json: bool
    stream: bool
    vector: _containers.RepeatedScalarFieldContainer[float]
    def __init__(
        self,
        estimated_prompt_tokens: int | None = ...,
        max_output_tokens: int | None = ...,
        needs_tools: bool | None = ...,
        needs_vision: bool | None = ...,
        needs_json: bool | None = ...,
        stream: bool | None = ...,
        vector: _Iterable[float] | None = ...,
    ) -> None: ...

class RankedCandidate(_message.Message):
    __slots__ = ("model", "provider", "score")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    score: float
    def __init__(
        self, model: str | None = ..., provider: str | None = ..., score: float | None = ...
    ) -> None: ...

class FilteredCandidate(_message.Message):
    __slots__ = ("model", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    def __init__(self, model: str | None = ..., reason: str | None = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = (
        "candidates",
        "decision_id",
        "explanation",
        "features",
        "filtered",
        "policy",
        "policy_version",
        "propensity",
        "route",
    )
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FILTERED_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    route: str
    policy: str
    candidates: _containers.RepeatedCompositeFieldContainer[RankedCandidate]
    filtered: _containers.RepeatedCompositeFieldContainer[FilteredCandidate]
    propensity: float
    explanation: str
    policy_version: int
    features: RequestFeatures
    def __init__(
        self,
        decision_id: str | None = ...,
        route: str | None = ...,
        policy: str | None = ...,
        candidates: _Iterable[RankedCandidate | _Mapping] | None = ...,
        filtered: _Iterable[FilteredCandidate | _Mapping] | None = ...,
        propensity: float | None = ...,
        explanation: str | None = ...,
        policy_version: int | None = ...,
        features: RequestFeatures | _Mapping | None = ...,
    ) -> None: ...
