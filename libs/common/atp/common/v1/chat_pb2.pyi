from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolCall(_message.Message):
    __slots__ = ("id", "type", "function_name", "arguments")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    function_name: str
    arguments: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., function_name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class CacheControl(_message.Message):
    __slots__ = ("type", "ttl")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    type: str
    ttl: str
    def __init__(self, type: _Optional[str] = ..., ttl: _Optional[str] = ...) -> None: ...

class ImageContent(_message.Message):
    __slots__ = ("url", "detail")
    URL_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    url: str
    detail: str
    def __init__(self, url: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class AudioContent(_message.Message):
    __slots__ = ("data", "format")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    data: str
    format: str
    def __init__(self, data: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class FileContent(_message.Message):
    __slots__ = ("file_id", "filename", "file_data", "url", "media_type", "title", "context", "citations", "content")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FILE_DATA_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    filename: str
    file_data: str
    url: str
    media_type: str
    title: str
    context: str
    citations: bool
    content: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, file_id: _Optional[str] = ..., filename: _Optional[str] = ..., file_data: _Optional[str] = ..., url: _Optional[str] = ..., media_type: _Optional[str] = ..., title: _Optional[str] = ..., context: _Optional[str] = ..., citations: _Optional[bool] = ..., content: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchResultContent(_message.Message):
    __slots__ = ("source", "title", "content", "citations")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    source: str
    title: str
    content: _containers.RepeatedScalarFieldContainer[str]
    citations: bool
    def __init__(self, source: _Optional[str] = ..., title: _Optional[str] = ..., content: _Optional[_Iterable[str]] = ..., citations: _Optional[bool] = ...) -> None: ...

class ThinkingContent(_message.Message):
    __slots__ = ("thinking", "signature", "redacted_data")
    THINKING_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REDACTED_DATA_FIELD_NUMBER: _ClassVar[int]
    thinking: str
    signature: str
    redacted_data: str
    def __init__(self, thinking: _Optional[str] = ..., signature: _Optional[str] = ..., redacted_data: _Optional[str] = ...) -> None: ...

class ContentPart(_message.Message):
    __slots__ = ("text", "image", "audio", "file", "thinking", "refusal", "search_result", "cache_control", "citations_json")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    THINKING_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    SEARCH_RESULT_FIELD_NUMBER: _ClassVar[int]
    CACHE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: ImageContent
    audio: AudioContent
    file: FileContent
    thinking: ThinkingContent
    refusal: str
    search_result: SearchResultContent
    cache_control: CacheControl
    citations_json: bytes
    def __init__(self, text: _Optional[str] = ..., image: _Optional[_Union[ImageContent, _Mapping]] = ..., audio: _Optional[_Union[AudioContent, _Mapping]] = ..., file: _Optional[_Union[FileContent, _Mapping]] = ..., thinking: _Optional[_Union[ThinkingContent, _Mapping]] = ..., refusal: _Optional[str] = ..., search_result: _Optional[_Union[SearchResultContent, _Mapping]] = ..., cache_control: _Optional[_Union[CacheControl, _Mapping]] = ..., citations_json: _Optional[bytes] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content", "name", "tool_call_id", "tool_calls", "parts", "refusal", "is_error", "audio_id")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    name: str
    tool_call_id: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    parts: _containers.RepeatedCompositeFieldContainer[ContentPart]
    refusal: str
    is_error: bool
    audio_id: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ..., name: _Optional[str] = ..., tool_call_id: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., parts: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ..., refusal: _Optional[str] = ..., is_error: _Optional[bool] = ..., audio_id: _Optional[str] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("type", "name", "description", "parameters_json", "strict", "format_json", "cache_control", "eager_input_streaming", "input_examples_json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_JSON_FIELD_NUMBER: _ClassVar[int]
    CACHE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    EAGER_INPUT_STREAMING_FIELD_NUMBER: _ClassVar[int]
    INPUT_EXAMPLES_JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    description: str
    parameters_json: bytes
    strict: bool
    format_json: bytes
    cache_control: CacheControl
    eager_input_streaming: bool
    input_examples_json: bytes
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json: _Optional[bytes] = ..., strict: _Optional[bool] = ..., format_json: _Optional[bytes] = ..., cache_control: _Optional[_Union[CacheControl, _Mapping]] = ..., eager_input_streaming: _Optional[bool] = ..., input_examples_json: _Optional[bytes] = ...) -> None: ...

class ToolChoice(_message.Message):
    __slots__ = ("mode", "name", "allowed", "allowed_mode")
    MODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODE_FIELD_NUMBER: _ClassVar[int]
    mode: str
    name: str
    allowed: _containers.RepeatedScalarFieldContainer[str]
    allowed_mode: str
    def __init__(self, mode: _Optional[str] = ..., name: _Optional[str] = ..., allowed: _Optional[_Iterable[str]] = ..., allowed_mode: _Optional[str] = ...) -> None: ...

class ResponseFormat(_message.Message):
    __slots__ = ("type", "name", "description", "schema_json", "strict")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    description: str
    schema_json: bytes
    strict: bool
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., schema_json: _Optional[bytes] = ..., strict: _Optional[bool] = ...) -> None: ...

class Reasoning(_message.Message):
    __slots__ = ("effort", "budget_tokens", "disabled", "include_thoughts", "adaptive", "display")
    EFFORT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_THOUGHTS_FIELD_NUMBER: _ClassVar[int]
    ADAPTIVE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    effort: str
    budget_tokens: int
    disabled: bool
    include_thoughts: bool
    adaptive: bool
    display: str
    def __init__(self, effort: _Optional[str] = ..., budget_tokens: _Optional[int] = ..., disabled: _Optional[bool] = ..., include_thoughts: _Optional[bool] = ..., adaptive: _Optional[bool] = ..., display: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("content", "parts")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    content: str
    parts: _containers.RepeatedCompositeFieldContainer[ContentPart]
    def __init__(self, content: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ...) -> None: ...

class AudioOutput(_message.Message):
    __slots__ = ("voice", "format")
    VOICE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    voice: str
    format: str
    def __init__(self, voice: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class GenerationParams(_message.Message):
    __slots__ = ("temperature", "top_p", "max_tokens", "stop", "seed", "user", "presence_penalty", "frequency_penalty", "tools", "tool_choice", "response_format", "parallel_tool_calls", "reasoning", "logprobs", "top_logprobs", "metadata", "store", "service_tier", "prediction", "modalities", "audio", "logit_bias", "n", "top_k", "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "verbosity", "openai_options", "cache_control", "anthropic_betas", "anthropic_options", "prefill", "max_completion_tokens")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LogitBiasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class OpenaiOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class AnthropicOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    LOGIT_BIAS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    PROMPT_CACHE_KEY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_CACHE_RETENTION_FIELD_NUMBER: _ClassVar[int]
    SAFETY_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    VERBOSITY_FIELD_NUMBER: _ClassVar[int]
    OPENAI_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CACHE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_BETAS_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_tokens: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    user: str
    presence_penalty: float
    frequency_penalty: float
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    tool_choice: ToolChoice
    response_format: ResponseFormat
    parallel_tool_calls: bool
    reasoning: Reasoning
    logprobs: bool
    top_logprobs: int
    metadata: _containers.ScalarMap[str, str]
    store: bool
    service_tier: str
    prediction: Prediction
    modalities: _containers.RepeatedScalarFieldContainer[str]
    audio: AudioOutput
    logit_bias: _containers.ScalarMap[str, int]
    n: int
    top_k: int
    prompt_cache_key: str
    prompt_cache_retention: str
    safety_identifier: str
    verbosity: str
    openai_options: _containers.ScalarMap[str, bytes]
    cache_control: CacheControl
    anthropic_betas: _containers.RepeatedScalarFieldContainer[str]
    anthropic_options: _containers.ScalarMap[str, bytes]
    prefill: bool
    max_completion_tokens: bool
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_tokens: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., user: _Optional[str] = ..., presence_penalty: _Optional[float] = ..., frequency_penalty: _Optional[float] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., tool_choice: _Optional[_Union[ToolChoice, _Mapping]] = ..., response_format: _Optional[_Union[ResponseFormat, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ..., reasoning: _Optional[_Union[Reasoning, _Mapping]] = ..., logprobs: _Optional[bool] = ..., top_logprobs: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., store: _Optional[bool] = ..., service_tier: _Optional[str] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., modalities: _Optional[_Iterable[str]] = ..., audio: _Optional[_Union[AudioOutput, _Mapping]] = ..., logit_bias: _Optional[_Mapping[str, int]] = ..., n: _Optional[int] = ..., top_k: _Optional[int] = ..., prompt_cache_key: _Optional[str] = ..., prompt_cache_retention: _Optional[str] = ..., safety_identifier: _Optional[str] = ..., verbosity: _Optional[str] = ..., openai_options: _Optional[_Mapping[str, bytes]] = ..., cache_control: _Optional[_Union[CacheControl, _Mapping]] = ..., anthropic_betas: _Optional[_Iterable[str]] = ..., anthropic_options: _Optional[_Mapping[str, bytes]] = ..., prefill: _Optional[bool] = ..., max_completion_tokens: _Optional[bool] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "reasoning_tokens", "estimated", "cache_write_tokens", "prompt_audio_tokens", "completion_audio_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_AUDIO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_AUDIO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_PREDICTION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_PREDICTION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    reasoning_tokens: int
    estimated: bool
    cache_write_tokens: int
    prompt_audio_tokens: int
    completion_audio_tokens: int
    accepted_prediction_tokens: int
    rejected_prediction_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cached_prompt_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., estimated: _Optional[bool] = ..., cache_write_tokens: _Optional[int] = ..., prompt_audio_tokens: _Optional[int] = ..., completion_audio_tokens: _Optional[int] = ..., accepted_prediction_tokens: _Optional[int] = ..., rejected_prediction_tokens: _Optional[int] = ...) -> None: ...

class Delta(_message.Message):
    __slots__ = ("content", "tool_calls", "role", "choice", "refusal", "reasoning", "reasoning_signature", "redacted_reasoning", "logprobs", "refusal_logprobs", "annotations", "audio", "finish_reason")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CHOICE_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    REASONING_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REDACTED_REASONING_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    content: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCallDelta]
    role: str
    choice: int
    refusal: str
    reasoning: str
    reasoning_signature: str
    redacted_reasoning: str
    logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprob]
    refusal_logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprob]
    annotations: _containers.RepeatedCompositeFieldContainer[Annotation]
    audio: AudioDelta
    finish_reason: str
    def __init__(self, content: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCallDelta, _Mapping]]] = ..., role: _Optional[str] = ..., choice: _Optional[int] = ..., refusal: _Optional[str] = ..., reasoning: _Optional[str] = ..., reasoning_signature: _Optional[str] = ..., redacted_reasoning: _Optional[str] = ..., logprobs: _Optional[_Iterable[_Union[TokenLogprob, _Mapping]]] = ..., refusal_logprobs: _Optional[_Iterable[_Union[TokenLogprob, _Mapping]]] = ..., annotations: _Optional[_Iterable[_Union[Annotation, _Mapping]]] = ..., audio: _Optional[_Union[AudioDelta, _Mapping]] = ..., finish_reason: _Optional[str] = ...) -> None: ...

class TokenLogprob(_message.Message):
    __slots__ = ("token", "logprob", "token_bytes", "has_bytes", "top_logprobs")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BYTES_FIELD_NUMBER: _ClassVar[int]
    HAS_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    token: str
    logprob: float
    token_bytes: bytes
    has_bytes: bool
    top_logprobs: _containers.RepeatedCompositeFieldContainer[TopLogprob]
    def __init__(self, token: _Optional[str] = ..., logprob: _Optional[float] = ..., token_bytes: _Optional[bytes] = ..., has_bytes: _Optional[bool] = ..., top_logprobs: _Optional[_Iterable[_Union[TopLogprob, _Mapping]]] = ...) -> None: ...

class TopLogprob(_message.Message):
    __slots__ = ("token", "logprob", "token_bytes", "has_bytes")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BYTES_FIELD_NUMBER: _ClassVar[int]
    HAS_BYTES_FIELD_NUMBER: _ClassVar[int]
    token: str
    logprob: float
    token_bytes: bytes
    has_bytes: bool
    def __init__(self, token: _Optional[str] = ..., logprob: _Optional[float] = ..., token_bytes: _Optional[bytes] = ..., has_bytes: _Optional[bool] = ...) -> None: ...

class Annotation(_message.Message):
    __slots__ = ("type", "url", "title", "start_index", "end_index", "cited_text", "anthropic_json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    START_INDEX_FIELD_NUMBER: _ClassVar[int]
    END_INDEX_FIELD_NUMBER: _ClassVar[int]
    CITED_TEXT_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    url: str
    title: str
    start_index: int
    end_index: int
    cited_text: str
    anthropic_json: bytes
    def __init__(self, type: _Optional[str] = ..., url: _Optional[str] = ..., title: _Optional[str] = ..., start_index: _Optional[int] = ..., end_index: _Optional[int] = ..., cited_text: _Optional[str] = ..., anthropic_json: _Optional[bytes] = ...) -> None: ...

class AudioDelta(_message.Message):
    __slots__ = ("id", "data", "transcript", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    data: str
    transcript: str
    expires_at: int
    def __init__(self, id: _Optional[str] = ..., data: _Optional[str] = ..., transcript: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class ToolCallDelta(_message.Message):
    __slots__ = ("index", "id", "type", "function_name", "arguments")
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
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., type: _Optional[str] = ..., function_name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class RequestFeatures(_message.Message):
    __slots__ = ("estimated_prompt_tokens", "max_output_tokens", "needs_tools", "needs_vision", "needs_json", "stream", "vector", "required_features", "regions")
    ESTIMATED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_TOOLS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_VISION_FIELD_NUMBER: _ClassVar[int]
    NEEDS_JSON_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    estimated_prompt_tokens: int
    max_output_tokens: int
    needs_tools: bool
    needs_vision: bool
    needs_json: bool
    stream: bool
    vector: _containers.RepeatedScalarFieldContainer[float]
    required_features: int
    regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, estimated_prompt_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., needs_tools: _Optional[bool] = ..., needs_vision: _Optional[bool] = ..., needs_json: _Optional[bool] = ..., stream: _Optional[bool] = ..., vector: _Optional[_Iterable[float]] = ..., required_features: _Optional[int] = ..., regions: _Optional[_Iterable[str]] = ...) -> None: ...

class RankedCandidate(_message.Message):
    __slots__ = ("model", "provider", "score")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    score: float
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class FilteredCandidate(_message.Message):
    __slots__ = ("model", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "route", "policy", "candidates", "filtered", "propensity", "explanation", "policy_version", "features")
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
    def __init__(self, decision_id: _Optional[str] = ..., route: _Optional[str] = ..., policy: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[RankedCandidate, _Mapping]]] = ..., filtered: _Optional[_Iterable[_Union[FilteredCandidate, _Mapping]]] = ..., propensity: _Optional[float] = ..., explanation: _Optional[str] = ..., policy_version: _Optional[int] = ..., features: _Optional[_Union[RequestFeatures, _Mapping]] = ...) -> None: ...
