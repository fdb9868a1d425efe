"""Request features for routing: size, hard needs, and a fixed-order context vector from cheap text cues."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_common import capabilities

# The context vector's order. Append only: learned LinUCB state is indexed by position, so reordering or
# inserting invalidates every arm (bump FEATURE_DIM and let the router start those routes cold).
FEATURE_NAMES: tuple[str, ...] = (
    "bias",  # 0: always 1.0 (the intercept)
    "log_prompt_tokens",  # 1: ln(1 + estimated prompt tokens) / 10, about 0..1.2
    "has_code",  # 2: code fences or code-like lines in the last user message
    "question",  # 3: the last user message reads as a question
    "non_ascii_share",  # 4: share of non-ASCII characters in the last user message (a language cue)
    "multiple_choice",  # 5: lettered options (A) ... B) ...)
    "math",  # 6: arithmetic, LaTeX or math vocabulary
    "log_turns",  # 7: ln(1 + user turns) / 3
    "tools",  # 8: tools offered or tool messages in the conversation
    "json",  # 9: a JSON response format is requested
    "vision",  # 10: images in the conversation
    "log_max_output_tokens",  # 11: ln(1 + max_tokens) / 10, 0 when unset
    # 12: estimated prompt tokens / 1000, capped at 4. The reward charges cost, which grows linearly with
    # the prompt; with the log above alone, LinUCB cannot fit that line and routes by size too coarsely
    # (atp-eval's figures in docs/design-notes.md, "Figures behind the code").
    "prompt_kilotokens",
)
FEATURE_DIM = len(FEATURE_NAMES)

CHARS_PER_TOKEN = 4
# Per-message framing tokens (role, separators) and the reply's priming, as in OpenAI's counting guide.
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_OVERHEAD_TOKENS = 3
# A high-detail 1024x1024 image at OpenAI's tile rate; a safe figure for context-window filtering.
IMAGE_TOKENS = 765
# The linear size feature saturates here, so one huge prompt cannot swamp the regression.
MAX_PROMPT_KILOTOKENS = 4.0
# The text cues read at most this many characters of the last user message, so cost stays flat in size.
SAMPLE_CHARS = 1024

_JSON_FORMATS = frozenset({"json_object", "json_schema"})

# The cues are tuned for speed: patterns that start with a literal let the regex engine skip ahead, and
# plain substring tests (C speed) replace alternations where a false positive costs little.
_CODE_FENCE = "```"
_CODE_LINE_START = re.compile(
    r"[ \t]*(?:def|class|import|from|function|const|let|var|public|private|return|#include)\b"
)
_CODE_LINE_AFTER_NEWLINE = re.compile(
    r"\n[ \t]*(?:def|class|import|from|function|const|let|var|public|private|return|#include)\b"
)
_CODE_SNIPPETS = (";\n", "{\n", "}\n", "=>", "){", ") {", "</")
_QUESTION_START = re.compile(
    r"\s*(?:who|what|when|where|why|how|which|whose|is|are|can|could|does|do|did|should|would|will|explain)\b",
    re.IGNORECASE,
)
_OPTION_A = re.compile(r"\n[ \t]*\(?[Aa][).:]")
_OPTION_A_START = re.compile(r"[ \t]*\(?[Aa][).:]")
_OPTION_B = re.compile(r"\n[ \t]*\(?[Bb][).:]")
_ARITHMETIC = re.compile(r"[0-9][ \t]*[-+*/^=<>][ \t]*[0-9]")
_LATEX = re.compile(r"\\(?:frac|sum|int|sqrt|cdot|le|ge|times)\b")
_MATH_SYMBOLS = re.compile("[\u2211\u222b\u221a\u2264\u2265\u2260\u03c0\u221e]")
# Stems matched as substrings of the lowercased text.
_MATH_WORDS = (
    "solve",
    "equation",
    "integral",
    "derivative",
    "theorem",
    "probability",
    "polynomial",
    "matrix",
)


def _has_code(text: str) -> bool:
    return (
        _CODE_FENCE in text
        or _CODE_LINE_START.match(text) is not None
        or _CODE_LINE_AFTER_NEWLINE.search(text) is not None
        or any(snippet in text for snippet in _CODE_SNIPPETS)
    )


def _multiple_choice(text: str) -> bool:
    return _OPTION_B.search(text) is not None and (
        _OPTION_A_START.match(text) is not None or _OPTION_A.search(text) is not None
    )


def _math_like(text: str, ascii_only: bool) -> bool:
    if _ARITHMETIC.search(text) or ("\\" in text and _LATEX.search(text)):
        return True
    if not ascii_only and _MATH_SYMBOLS.search(text):
        return True
    lowered = text.lower()
    return any(word in lowered for word in _MATH_WORDS)


def _parts(parts: Sequence[chat_pb2.ContentPart]) -> tuple[str, int, int]:
    """The text of typed content parts, their image count and the feature bits the other parts need."""
    texts: list[str] = []
    images = 0
    bits = 0
    for part in parts:
        kind = part.WhichOneof("kind")
        if kind == "text":
            texts.append(part.text)
            if part.citations_json:
                bits |= _CITATIONS
        elif kind == "image":
            images += 1
        elif kind == "audio":
            bits |= _AUDIO_INPUT
        elif kind == "file":
            bits |= _FILES
            texts.extend(part.file.content)
        elif kind == "refusal":
            texts.append(part.refusal)
        elif kind == "search_result":
            texts.extend(part.search_result.content)
        elif kind == "thinking":
            texts.append(part.thinking.thinking)
    return "\n".join(texts), images, bits


def _param_bits(params: chat_pb2.GenerationParams) -> int:
    """The feature bits the set parameters need; reads only the fields the client set."""
    bits = 0
    for field, value in params.ListFields():
        check = _PARAM_BITS.get(field.number)
        if check is not None:
            bits |= check(value)
    return bits | _TOGETHER if bits & _BOTH_SAMPLERS == _BOTH_SAMPLERS else bits


def _tool_bits(tools: Sequence[chat_pb2.Tool]) -> int:
    bits = _TOOLS if tools else 0
    for tool in tools:
        if tool.type == "custom":
            bits |= _CUSTOM_TOOLS
    return bits


def _reasoning_bits(reasoning: chat_pb2.Reasoning) -> int:
    # Reasoning turned off (effort `none`, thinking disabled) asks nothing of the model.
    wants = (reasoning.effort not in ("", "none") or reasoning.budget_tokens > 0) and not reasoning.disabled
    if reasoning.adaptive and not wants:
        # Adaptive thinking lets the model decide; one that cannot think decides not to.
        return 0
    bits = _REASONING if wants or reasoning.include_thoughts else 0
    return bits | (_FEATURE["max_effort"].bit if reasoning.effort == "max" else 0)


_FEATURE = capabilities.BY_NAME
_TOOLS = _FEATURE["tools"].bit
_VISION = _FEATURE["vision"].bit
_JSON = _FEATURE["json"].bit
_JSON_OBJECT = _FEATURE["json_object"].bit | _JSON
_STREAMING = _FEATURE["streaming"].bit
_AUDIO_INPUT = _FEATURE["audio_input"].bit
_FILES = _FEATURE["files"].bit
_CITATIONS = _FEATURE["citations"].bit
_REASONING = _FEATURE["reasoning"].bit
_CUSTOM_TOOLS = _FEATURE["custom_tools"].bit
_CHAT = _FEATURE["chat"].bit
_AUDIO_OUTPUT = _FEATURE["audio_output"].bit
_LOGPROBS = _FEATURE["logprobs"].bit
_PENALTIES = _FEATURE["penalties"].bit
_ASSISTANT_FIRST = _FEATURE["assistant_first"].bit
_TOOL_HISTORY_ONLY = _FEATURE["tool_history_only"].bit
_INSTRUCTIONS_ONLY = _FEATURE["instructions_only"].bit
_STOPS = _FEATURE["stop_sequences"].bit
_BLANK_STOP = _FEATURE["blank_stop"].bit | _STOPS
_HOT = _FEATURE["temperature_above_1"].bit
_WARM = _FEATURE["custom_temperature"].bit
_HOT_WARM = _HOT | _WARM
_TOP_P = _FEATURE["custom_top_p"].bit
_BOTH_SAMPLERS = _WARM | _TOP_P
_TOGETHER = _FEATURE["temperature_and_top_p"].bit
_INSTRUCTIONS = frozenset({"system", "developer"})
_FIELDS = chat_pb2.GenerationParams.DESCRIPTOR.fields_by_name


def _anthropic_option_bits(options: Mapping[str, bytes]) -> int:
    """Anthropic-only options need Anthropic's API, but for what changes nothing elsewhere: the standard
    speed, and context_management whose only edits are clear_thinking ones (those concern Claude's own
    thinking blocks, which no other model is sent)."""
    bits = 0
    for name, raw in options.items():
        if name == "speed" and raw == b'"standard"':
            continue
        if name == "context_management" and _only_clear_thinking(raw):
            continue
        feature = _FEATURE.get(name)
        bits |= feature.bit if feature is not None else _FEATURE["context_management"].bit
    return bits


def _only_clear_thinking(raw: bytes) -> bool:
    try:
        kinds = [edit.get("type", "") for edit in orjson.loads(raw).get("edits") or ()]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return False
    return all(isinstance(kind, str) and kind.startswith("clear_thinking_") for kind in kinds)


def _always(name: str) -> Callable[[Any], int]:
    bit = _FEATURE[name].bit
    return lambda value: bit


def _stop_bits(stops: Sequence[str]) -> int:
    for stop in stops:
        if not stop.strip():
            return _BLANK_STOP
    return _STOPS


# Field number to the bits that field's value needs. Parameters every model honours (max_tokens, user,
# metadata, safety_identifier) need none; a temperature or top_p of 1 neither.
_PARAM_BITS: Mapping[int, Callable[[Any], int]] = MappingProxyType(
    {
        _FIELDS[name].number: check
        for name, check in (
            ("tools", _tool_bits),
            ("tool_choice", lambda c: _CUSTOM_TOOLS if c.mode in ("allowed_tools", "custom") else 0),
            (
                "response_format",
                lambda f: (
                    _JSON_OBJECT if f.type == "json_object" else _JSON if f.type in _JSON_FORMATS else 0
                ),
            ),
            ("parallel_tool_calls", lambda v: 0 if v else _FEATURE["no_parallel_tool_calls"].bit),
            ("reasoning", _reasoning_bits),
            ("logprobs", lambda v: _LOGPROBS if v else 0),
            # Out-of-range values (n < 1, a negative top_logprobs) set the bit too, so the adapters' range
            # check, which runs only for requests with these bits, sees them.
            ("top_logprobs", lambda v: _LOGPROBS if v != 0 else 0),
            ("store", lambda v: _FEATURE["store"].bit if v else 0),
            ("service_tier", lambda v: 0 if v in ("auto", "default") else _FEATURE["service_tier"].bit),
            ("prediction", _always("prediction")),
            ("modalities", lambda v: _AUDIO_OUTPUT if "audio" in v else 0),
            ("audio", _always("audio_output")),
            ("logit_bias", _always("logit_bias")),
            ("n", lambda v: _FEATURE["multiple_choices"].bit if v != 1 else 0),
            ("top_k", _always("top_k")),
            ("seed", _always("seed")),
            # A zero penalty is the default: any provider honours it by leaving it out.
            ("presence_penalty", lambda v: _PENALTIES if v else 0),
            ("frequency_penalty", lambda v: _PENALTIES if v else 0),
            # OpenAI's default verbosity is what every provider gives by omission.
            ("verbosity", lambda v: 0 if v == "medium" else _FEATURE["verbosity"].bit),
            ("openai_options", _always("openai_options")),
            ("anthropic_options", _anthropic_option_bits),
            ("prefill", _always("prefill")),
            ("stop", _stop_bits),
            ("temperature", lambda v: _HOT_WARM if v > 1 else 0 if v == 1 else _WARM),
            ("top_p", lambda v: 0 if v == 1 else _TOP_P),
        )
    }
)


def compute_features(
    messages: Sequence[chat_pb2.ChatMessage], params: chat_pb2.GenerationParams, stream: bool
) -> chat_pb2.RequestFeatures:
    """The routing features of a request. Reads nothing but the request; a few microseconds for chat turns.

    The proto is built directly: a slots dataclass plus a to_proto costs about the same, and the decision
    has to carry the proto anyway.
    """
    chars = images = user_turns = 0
    tool_history = False
    last_user = ""
    required = _CHAT | (_STREAMING if stream else 0)
    for message in messages:
        content = message.content
        if message.parts:
            content, count, bits = _parts(message.parts)
            images += count
            required |= bits
        chars += len(content) + len(message.name)
        if message.tool_calls:
            tool_history = True
            for call in message.tool_calls:
                chars += len(call.function_name) + len(call.arguments)
        role = message.role
        if role == "user":
            user_turns += 1
            last_user = content
        elif role == "tool":
            tool_history = True
        elif role == "assistant" and message.audio_id:
            # An earlier audio reply referred to by id: only a provider that speaks audio can resolve it.
            required |= _AUDIO_OUTPUT
    for tool in params.tools:
        chars += len(tool.name) + len(tool.description) + len(tool.parameters_json)
    prompt_tokens = (
        chars // CHARS_PER_TOKEN
        + MESSAGE_OVERHEAD_TOKENS * len(messages)
        + REPLY_OVERHEAD_TOKENS
        + IMAGE_TOKENS * images
    )
    max_output = max(params.max_tokens, 0) if params.HasField("max_tokens") else 0
    required |= _param_bits(params) | _opening_bits(messages)
    if tool_history:
        required |= _TOOLS if params.tools else _TOOLS | _TOOL_HISTORY_ONLY
    if images:
        required |= _VISION
    needs_tools = bool(required & _TOOLS)
    needs_json = bool(required & _JSON)
    return chat_pb2.RequestFeatures(
        estimated_prompt_tokens=prompt_tokens,
        max_output_tokens=max_output,
        needs_tools=needs_tools,
        needs_vision=images > 0,
        needs_json=needs_json,
        stream=stream,
        vector=_context_vector(
            last_user, prompt_tokens, user_turns, needs_tools, needs_json, images, max_output
        ),
        required_features=required,
    )


def _opening_bits(messages: Sequence[chat_pb2.ChatMessage]) -> int:
    """assistant_first when the first turn after the instructions is the assistant's; instructions_only
    when there is no such turn."""
    for message in messages:
        if message.role not in _INSTRUCTIONS:
            return _ASSISTANT_FIRST if message.role == "assistant" else 0
    return _INSTRUCTIONS_ONLY if messages else 0


def _context_vector(
    last_user: str,
    prompt_tokens: int,
    user_turns: int,
    needs_tools: bool,
    needs_json: bool,
    images: int,
    max_output: int,
) -> tuple[float, ...]:
    """The context vector in FEATURE_NAMES order; the text cues read the last user message's start."""
    sample = last_user[:SAMPLE_CHARS]
    ascii_only = sample.isascii()
    non_ascii = 0.0 if ascii_only else 1.0 - len(sample.encode("ascii", "ignore")) / len(sample)
    stripped = sample.rstrip()
    question = stripped.endswith(("?", "\uff1f")) or _QUESTION_START.match(sample) is not None
    return (
        1.0,
        math.log1p(prompt_tokens) / 10.0,
        1.0 if sample and _has_code(sample) else 0.0,
        1.0 if question else 0.0,
        non_ascii,
        1.0 if sample and _multiple_choice(sample) else 0.0,
        1.0 if sample and _math_like(sample, ascii_only) else 0.0,
        math.log1p(user_turns) / 3.0,
        1.0 if needs_tools else 0.0,
        1.0 if needs_json else 0.0,
        1.0 if images else 0.0,
        math.log1p(max_output) / 10.0 if max_output > 0 else 0.0,
        min(prompt_tokens / 1000.0, MAX_PROMPT_KILOTOKENS),
    )
