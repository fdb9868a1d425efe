"""OpenAI's Chat Completions request, every parameter and message shape, as strict TypedDicts."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Required

from pydantic import ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

_CONFIG = ConfigDict(extra="forbid", strict=True)

ShortText = Annotated[str, Field(max_length=256)]
Name = Annotated[str, Field(min_length=1, max_length=128)]


class CacheControl(TypedDict, total=False):
    """Anthropic's prompt-caching hint, accepted on content parts and tools (an ATP extension)."""

    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Required[Literal["ephemeral"]]
    ttl: Literal["5m", "1h"]


class CacheBreakpoint(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    mode: Required[Literal["explicit"]]
    ttl: Literal["30m", "12h"]


class TextPart(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Required[Literal["text"]]
    text: Required[str]
    prompt_cache_breakpoint: CacheBreakpoint
    cache_control: CacheControl


class ImageUrl(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    url: Required[Annotated[str, Field(min_length=1)]]
    detail: Literal["auto", "low", "high", "original"]


class ImagePart(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Required[Literal["image_url"]]
    image_url: Required[ImageUrl]
    prompt_cache_breakpoint: CacheBreakpoint
    cache_control: CacheControl


class InputAudio(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    data: Annotated[str, Field(min_length=1)]
    format: Literal["wav", "mp3"]


class AudioPart(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Required[Literal["input_audio"]]
    input_audio: Required[InputAudio]
    prompt_cache_breakpoint: CacheBreakpoint
    cache_control: CacheControl


class FileData(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    file_data: str
    file_id: ShortText
    filename: ShortText


class FilePart(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Required[Literal["file"]]
    file: Required[FileData]
    prompt_cache_breakpoint: CacheBreakpoint
    cache_control: CacheControl


class RefusalPart(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["refusal"]
    refusal: str


TextParts = Annotated[list[TextPart], Field(min_length=1)]
UserParts = Annotated[
    list[
        Annotated[
            TextPart | ImagePart | AudioPart | FilePart,
            Field(discriminator="type"),
        ]
    ],
    Field(min_length=1),
]
AssistantParts = Annotated[
    list[Annotated[TextPart | RefusalPart, Field(discriminator="type")]],
    Field(min_length=1),
]


class FunctionCall(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    name: Name
    arguments: str


class CustomCall(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    name: Name
    input: str


class FunctionToolCall(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    id: Name
    type: Literal["function"]
    function: FunctionCall


class CustomToolCall(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    id: Name
    type: Literal["custom"]
    custom: CustomCall


class AudioRef(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    id: Name


class SystemMessage(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    role: Required[Literal["system"]]
    content: Required[str | TextParts]
    name: Name


class DeveloperMessage(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    role: Required[Literal["developer"]]
    content: Required[str | TextParts]
    name: Name


class UserMessage(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    role: Required[Literal["user"]]
    content: Required[str | UserParts]
    name: Name


class AssistantMessage(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    role: Required[Literal["assistant"]]
    content: str | AssistantParts | None
    refusal: str | None
    name: Name
    tool_calls: Annotated[
        list[
            Annotated[
                FunctionToolCall | CustomToolCall,
                Field(discriminator="type"),
            ]
        ],
        Field(max_length=128),
    ]
    function_call: FunctionCall | None
    audio: AudioRef | None
    # The SDKs echo this back when a reply is appended to the conversation; only null is accepted, so
    # nothing with meaning is dropped.
    annotations: None


class ToolMessage(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    role: Literal["tool"]
    content: str | TextParts
    tool_call_id: Name


class FunctionMessage(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    role: Literal["function"]
    content: str | None
    name: Name


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    name: Required[Annotated[str, Field(min_length=1, max_length=64)]]
    description: str
    parameters: dict[str, Any]
    strict: bool | None


class FunctionTool(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Required[Literal["function"]]
    function: Required[FunctionDefinition]
    cache_control: CacheControl


class GrammarDefinition(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    definition: str
    syntax: Literal["lark", "regex"]


class TextFormat(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["text"]


class GrammarFormat(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["grammar"]
    grammar: GrammarDefinition


class CustomDefinition(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    name: Required[Annotated[str, Field(min_length=1, max_length=64)]]
    description: str
    format: Annotated[TextFormat | GrammarFormat, Field(discriminator="type")]


class CustomTool(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Required[Literal["custom"]]
    custom: Required[CustomDefinition]
    cache_control: CacheControl


class LegacyFunction(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    name: Required[Annotated[str, Field(min_length=1, max_length=64)]]
    description: str
    parameters: dict[str, Any]


class NamedFunction(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    name: Name


class NamedToolChoice(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["function"]
    function: NamedFunction


class NamedCustomChoice(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["custom"]
    custom: NamedFunction


class AllowedTools(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    mode: Literal["auto", "required"]
    tools: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=128)]


class AllowedToolsChoice(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


class JsonSchema(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    name: Required[Annotated[str, Field(min_length=1, max_length=64)]]
    description: str
    schema: dict[str, Any]
    strict: bool | None


class TextResponse(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["text"]


class JsonObjectResponse(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["json_object"]


class JsonSchemaResponse(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["json_schema"]
    json_schema: JsonSchema


class StreamOptions(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    include_usage: bool
    include_obfuscation: bool


class VoiceId(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    id: Name


class AudioParams(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]
    voice: Name | VoiceId


class PredictionParam(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["content"]
    content: str | TextParts


class ModerationMode(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    mode: Literal["score", "block"]


class ModerationPolicy(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    input: ModerationMode | None
    output: ModerationMode | None


class Moderation(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    model: Required[Name]
    policy: ModerationPolicy | None


class PromptCacheOptions(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    mode: Literal["implicit", "explicit"]
    ttl: Literal["30m"]


class Approximate(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    city: ShortText
    country: ShortText
    region: ShortText
    timezone: ShortText


class UserLocation(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["approximate"]
    approximate: Approximate


class WebSearchOptions(TypedDict, total=False):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    search_context_size: Literal["low", "medium", "high"]
    user_location: UserLocation | None


MetadataKey = Annotated[str, Field(min_length=1, max_length=64)]


class ChatCompletionRequest(TypedDict, total=False):
    """Every parameter of OpenAI's chat completion request; anything else is refused by name. Optional
    parameters also take null, meaning unset, as OpenAI's API does."""

    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    model: Required[Annotated[str, Field(min_length=1, max_length=256)]]
    messages: Required[Annotated[list[Message], Field(min_length=1)]]
    stream: bool | None
    stream_options: StreamOptions | None
    n: Annotated[int, Field(ge=1, le=128)] | None
    temperature: Annotated[float, Field(ge=0, le=2)] | None
    top_p: Annotated[float, Field(ge=0, le=1)] | None
    max_tokens: Annotated[int, Field(ge=1, le=2**31 - 1)] | None
    max_completion_tokens: Annotated[int, Field(ge=1, le=2**31 - 1)] | None
    stop: ShortText | Annotated[list[ShortText], Field(max_length=4)] | None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None
    user: ShortText | None
    safety_identifier: ShortText | None
    tools: (
        Annotated[
            list[
                Annotated[
                    FunctionTool | CustomTool,
                    Field(discriminator="type"),
                ]
            ],
            Field(max_length=128),
        ]
        | None
    )
    tool_choice: (
        Literal["none", "auto", "required"]
        | Annotated[
            NamedToolChoice | NamedCustomChoice | AllowedToolsChoice,
            Field(discriminator="type"),
        ]
        | None
    )
    parallel_tool_calls: bool | None
    functions: Annotated[list[LegacyFunction], Field(min_length=1, max_length=128)] | None
    function_call: Literal["none", "auto"] | NamedFunction | None
    response_format: (
        Annotated[
            TextResponse | JsonObjectResponse | JsonSchemaResponse,
            Field(discriminator="type"),
        ]
        | None
    )
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None
    logit_bias: Annotated[dict[str, Annotated[int, Field(ge=-100, le=100)]], Field(max_length=1024)] | None
    logprobs: bool | None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None
    metadata: Annotated[dict[MetadataKey, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None
    store: bool | None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None
    verbosity: Literal["low", "medium", "high"] | None
    modalities: Annotated[list[Literal["text", "audio"]], Field(min_length=1, max_length=2)] | None
    audio: AudioParams | None
    prediction: PredictionParam | None
    prompt_cache_key: ShortText | None
    prompt_cache_retention: Literal["in_memory", "24h"] | None
    prompt_cache_options: PromptCacheOptions | None
    moderation: Moderation | None
    web_search_options: WebSearchOptions | None


CHAT_REQUEST = TypeAdapter(ChatCompletionRequest)
