"""Request features for routing: size, hard needs, and a fixed-order context vector from cheap text cues."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import orjson

from atp.common.v1 import chat_pb2

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
    # (measured with atp-eval on mmlu_dev: +2 points of cost saved at 95% quality, on three orders).
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

_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
_JSON_FORMATS = frozenset({"json_object", "json_schema"})
_EMPTY_JSON = frozenset({b"", b"[]", b"null", b"{}"})

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


def _parts(raw: bytes) -> tuple[str, int]:
    """Text of OpenAI content parts and their image count; unparsable parts count as opaque text."""
    try:
        parts = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace"), 0
    if not isinstance(parts, list):
        return "", 0
    texts: list[str] = []
    images = 0
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in _IMAGE_PART_TYPES:
            images += 1
        else:
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
    return "\n".join(texts), images


def _wants_json(raw: bytes) -> bool:
    if not raw:
        return False
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and value.get("type") in _JSON_FORMATS


def compute_features(
    messages: Sequence[chat_pb2.ChatMessage], params: chat_pb2.GenerationParams, stream: bool
) -> chat_pb2.RequestFeatures:
    """The routing features of a request. Reads nothing but the request; a few microseconds for chat turns.

    The proto is built directly: measured against a slots dataclass plus a to_proto, it costs about the
    same (~1 us) and the decision has to carry the proto anyway.
    """
    chars = 0
    images = 0
    user_turns = 0
    tool_history = False
    last_user = ""
    for message in messages:
        content = message.content
        if message.content_parts_json:
            content, count = _parts(message.content_parts_json)
            images += count
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
    tools_json = params.tools_json
    offers_tools = tools_json.strip() not in _EMPTY_JSON
    chars += len(tools_json)
    prompt_tokens = (
        chars // CHARS_PER_TOKEN
        + MESSAGE_OVERHEAD_TOKENS * len(messages)
        + REPLY_OVERHEAD_TOKENS
        + IMAGE_TOKENS * images
    )
    max_output = max(params.max_tokens, 0) if params.HasField("max_tokens") else 0
    needs_tools = offers_tools or tool_history
    needs_json = _wants_json(params.response_format_json)

    sample = last_user[:SAMPLE_CHARS]
    ascii_only = sample.isascii()
    non_ascii = 0.0 if ascii_only else 1.0 - len(sample.encode("ascii", "ignore")) / len(sample)
    stripped = sample.rstrip()
    question = stripped.endswith(("?", "\uff1f")) or _QUESTION_START.match(sample) is not None
    vector = (
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
    return chat_pb2.RequestFeatures(
        estimated_prompt_tokens=prompt_tokens,
        max_output_tokens=max_output,
        needs_tools=needs_tools,
        needs_vision=images > 0,
        needs_json=needs_json,
        stream=stream,
        vector=vector,
    )
