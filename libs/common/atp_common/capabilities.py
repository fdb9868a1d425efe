"""Request features a candidate must honour, as bits, and which provider types and models honour each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Feature:
    """One thing a request may need of the model that serves it.

    `model_capability` names the configuration capability a model must list as well (None: any model of
    a provider type that honours the feature will do). `param` is the Chat Completions parameter that asks
    for it, named in the error when no candidate can honour it.
    """

    name: str
    bit: int
    description: str
    model_capability: str | None = None
    param: str = ""


# The bit positions are part of the snapshot contract (ModelSpec.supported_features and
# RequestFeatures.required_features): append, never renumber.
FEATURES: tuple[Feature, ...] = (
    Feature("tools", 1 << 0, "tool definitions, tool calls or tool results", "tools", "tools"),
    Feature("vision", 1 << 1, "image input", "vision", "messages"),
    Feature("json", 1 << 2, "response_format json_object or json_schema", "json", "response_format"),
    Feature("streaming", 1 << 3, "a streamed reply", "streaming", "stream"),
    Feature("audio_input", 1 << 4, "input_audio content parts", "audio", "messages"),
    Feature(
        "audio_output",
        1 << 5,
        "modalities with audio, the audio parameter, or an earlier audio reply by id",
        "audio",
        "modalities",
    ),
    Feature("files", 1 << 6, "file and document content parts", "files", "messages"),
    Feature("reasoning", 1 << 7, "reasoning_effort or a thinking budget", "reasoning", "reasoning_effort"),
    Feature("multiple_choices", 1 << 8, "n greater than 1", None, "n"),
    Feature("logprobs", 1 << 9, "logprobs or top_logprobs", None, "logprobs"),
    Feature("logit_bias", 1 << 10, "logit_bias", None, "logit_bias"),
    Feature("prediction", 1 << 11, "predicted output (prediction)", None, "prediction"),
    Feature("seed", 1 << 12, "seed", None, "seed"),
    Feature("penalties", 1 << 13, "presence_penalty or frequency_penalty", None, "presence_penalty"),
    Feature("top_k", 1 << 14, "top_k", None, "top_k"),
    Feature("no_parallel_tool_calls", 1 << 15, "parallel_tool_calls false", None, "parallel_tool_calls"),
    Feature("store", 1 << 16, "store true (the provider keeps the completion)", None, "store"),
    Feature("service_tier", 1 << 17, "a service_tier other than auto", None, "service_tier"),
    Feature("verbosity", 1 << 18, "verbosity", None, "verbosity"),
    Feature(
        "openai_options",
        1 << 19,
        "web_search_options, moderation or prompt_cache_options",
        None,
        "web_search_options",
    ),
    Feature("custom_tools", 1 << 20, "custom (free-form) tools or allowed_tools", None, "tools"),
    # 1 << 21 was prompt_cache_key: a cache hint every provider type now honours (design notes).
    Feature("embeddings", 1 << 22, "an embeddings request", "embeddings", "model"),
    Feature("chat", 1 << 23, "a chat, responses or messages request", None, "model"),
    # JSON without a schema: Anthropic's structured output takes a schema only.
    Feature("json_object", 1 << 24, "response_format json_object", "json", "response_format"),
    Feature(
        "context_management",
        1 << 25,
        "Anthropic's context_management with edits other than clear_thinking",
        None,
        "context_management",
    ),
    Feature("max_effort", 1 << 26, "effort max (Anthropic's highest)", None, "output_config.effort"),
    Feature("speed", 1 << 27, "Anthropic's fast output mode (speed fast)", None, "speed"),
    Feature("inference_geo", 1 << 28, "Anthropic's inference region (inference_geo)", None, "inference_geo"),
    Feature(
        "citations",
        1 << 29,
        "an earlier reply's text sent back with its document citations",
        None,
        "messages",
    ),
    Feature(
        "prefill",
        1 << 30,
        "a reply that continues a final assistant message (Anthropic's prefill)",
        None,
        "messages",
    ),
    # Claude's APIs (Anthropic's and Bedrock's Converse, for every model) refuse a conversation that
    # does not start with a user turn; a chat that opens with the assistant's greeting is common.
    Feature(
        "assistant_first",
        1 << 31,
        "a conversation whose first turn after the instructions is the assistant's",
        None,
        "messages",
    ),
    # Claude's APIs refuse a stop sequence that is empty or only whitespace ("\n" is a common one).
    Feature("blank_stop", 1 << 32, "a stop sequence that is empty or only whitespace", None, "stop"),
    # OpenAI's and Gemini's temperature goes to 2; Anthropic's and every Bedrock model's to 1.
    Feature("temperature_above_1", 1 << 33, "a temperature above 1", None, "temperature"),
    # Claude's APIs refuse tool calls in the history when no tools are offered; Anthropic's is sent the
    # called tools with tool_choice none, Bedrock's Converse has no such choice.
    Feature("tool_history_only", 1 << 34, "earlier tool calls with no tools offered", None, "tools"),
    # Anthropic's, Gemini's and Bedrock's APIs need a conversation turn; OpenAI's takes instructions alone.
    Feature("instructions_only", 1 << 35, "system or developer messages and no other turn", None, "messages"),
    # Every provider type takes these; a model configured with `sampling: default` (OpenAI's reasoning
    # models) does not (SAMPLING_FEATURES).
    Feature("custom_temperature", 1 << 36, "a temperature other than 1", None, "temperature"),
    Feature("custom_top_p", 1 << 37, "a top_p other than 1", None, "top_p"),
    # Both of the two; Claude's newer models (`sampling: temperature_or_top_p`) take one or the other.
    Feature("temperature_and_top_p", 1 << 38, "a temperature and a top_p both other than 1", None, "top_p"),
    # Any stop sequence; OpenAI's o3 and o4-mini (`stop_sequences: false`) refuse them.
    Feature("stop_sequences", 1 << 39, "stop sequences", None, "stop"),
)
BY_NAME: Mapping[str, Feature] = MappingProxyType({f.name: f for f in FEATURES})
ALL_BITS = sum(f.bit for f in FEATURES)

_EVERYTHING_BUT = frozenset(f.name for f in FEATURES)


# What a model that takes only the default sampling refuses (OpenAI's reasoning models answer each with a
# 400): a temperature or top_p other than 1, penalties, log probabilities, token biases.
SAMPLING_FEATURES = ("custom_temperature", "custom_top_p", "penalties", "logprobs", "logit_bias")
# What a model's `sampling` configuration leaves out of what its provider type honours.
_SAMPLING_BITS = {
    "any": 0,
    "default": sum(BY_NAME[name].bit for name in SAMPLING_FEATURES),
    "temperature_or_top_p": BY_NAME["temperature_and_top_p"].bit,
}

# Options of Anthropic's API that no other provider type can honour.
_ANTHROPIC_ONLY = ("context_management", "max_effort", "speed", "inference_geo")


def _all_but(*names: str) -> frozenset[str]:
    return _EVERYTHING_BUT - frozenset(names)


# What each provider type's API can express (natively or by translation). The compatibility table in
# the README is generated from this and the dialects' parameter tables.
PROVIDER_FEATURES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "openai": _all_but("top_k", "citations", "prefill", *_ANTHROPIC_ONLY),
        "azure": _all_but("top_k", "citations", "prefill", *_ANTHROPIC_ONLY),
        "anthropic": frozenset(
            (
                "tools",
                "vision",
                "json",
                "streaming",
                "files",
                "reasoning",
                "top_k",
                "no_parallel_tool_calls",
                "service_tier",
                "chat",
                "citations",
                "prefill",
                "tool_history_only",
                "custom_temperature",
                "custom_top_p",
                "temperature_and_top_p",
                "stop_sequences",
                *_ANTHROPIC_ONLY,
            )
        ),
        "gemini": frozenset(
            (
                "tools",
                "vision",
                "json",
                "streaming",
                "audio_input",
                "files",
                "reasoning",
                "multiple_choices",
                "logprobs",
                "seed",
                "penalties",
                "top_k",
                "embeddings",
                "json_object",
                "chat",
                "assistant_first",
                "blank_stop",
                "temperature_above_1",
                "tool_history_only",
                "custom_temperature",
                "custom_top_p",
                "temperature_and_top_p",
                "stop_sequences",
            )
        ),
        "bedrock": frozenset(
            (
                "tools",
                "vision",
                "json",
                "streaming",
                "audio_input",
                "files",
                "reasoning",
                "top_k",
                "service_tier",
                "json_object",
                "chat",
                "citations",
                "prefill",
                "custom_temperature",
                "custom_top_p",
                "temperature_and_top_p",
                "stop_sequences",
            )
        ),
        # The echo model: parameters that change nothing in a deterministic echo are honoured as such;
        # those that promise something it cannot do (audio replies, stored completions, a tier, options
        # only OpenAI knows, token biases, predicted output) are not.
        "local": _all_but(
            *_ANTHROPIC_ONLY,
            "audio_output",
            "logit_bias",
            "prediction",
            "store",
            "service_tier",
            "verbosity",
            "openai_options",
        ),
    }
)

# Capabilities a configured model may list; `chat` is implied unless the model is an embedding model.
MODEL_CAPABILITIES = ("tools", "vision", "json", "streaming", "audio", "files", "reasoning", "embeddings")


def supported_features(
    provider_type: str, capabilities: Iterable[str], sampling: str = "any", stop_sequences: bool = True
) -> int:
    """The bit set of features a model of `provider_type` listing `capabilities` can honour, less what
    its `sampling` and `stop_sequences` configuration say it refuses."""
    caps = set(capabilities)
    if "embeddings" not in caps:
        caps.add("chat")
    bits = 0
    for name in PROVIDER_FEATURES.get(provider_type, ()):
        feature = BY_NAME[name]
        needed = feature.model_capability
        if name == "chat":
            needed = "chat"
        if needed is None or needed in caps:
            bits |= feature.bit
    withheld = _SAMPLING_BITS[sampling] | (0 if stop_sequences else BY_NAME["stop_sequences"].bit)
    return bits & ~withheld


class _ModelLimits(Protocol):
    @property
    def capabilities(self) -> Sequence[str]: ...
    @property
    def sampling(self) -> str: ...
    @property
    def stop_sequences(self) -> bool: ...


def model_supported_features(provider_type: str, model: _ModelLimits) -> int:
    """supported_features for a configured model (a ModelConfig) served through `provider_type`."""
    return supported_features(provider_type, model.capabilities, model.sampling, model.stop_sequences)


def feature_names(bits: int) -> list[str]:
    """The names of the features in `bits`, in table order."""
    return [f.name for f in FEATURES if bits & f.bit]
