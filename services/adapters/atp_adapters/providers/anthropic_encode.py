"""The typed internal request as an Anthropic Messages API body; what Messages cannot express is refused."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers.base import (
    ProviderError,
    ProviderRequest,
    blank_text,
    claude_cache_ttl,
    claude_sampling,
    claude_tool_id,
    from_gemini,
    keyed_cache_hint,
    recalled_tools,
    unsupported,
)
from atp_adapters.providers.openai_encode import effort_for_budget

# Messages requires max_tokens; when the caller sets none, allow a long reply rather than cut it short.
DEFAULT_MAX_TOKENS = 4096
# reasoning_effort as a thinking budget (docs/design-notes.md, "Anthropic and Gemini translation").
# 1024 is the smallest budget Messages accepts.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
# Messages refuses a request with more cache breakpoints than this.
MAX_CACHE_HINTS = 4
_SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}
_TOOL_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
_DOCUMENT_TYPES = ("application/pdf", "text/plain")


def _text_blocks(texts: Iterable[str]) -> list[dict[str, str]]:
    return [{"type": "text", "text": text} for text in texts]


class _Encoder:
    """One request's translation; `provider` names the provider in every refusal."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.cache_hints = 0
        self.called: list[str] = []

    def refuse(self, path: str, why: str) -> ProviderError:
        return unsupported(self.provider, path, why)

    # Content.

    def cache(
        self, block: dict[str, Any], hint: chat_pb2.CacheControl, present: bool, path: str
    ) -> dict[str, Any]:
        if present:
            self.cache_hints += 1
            if self.cache_hints > MAX_CACHE_HINTS:
                raise self.refuse(path, f"Messages takes at most {MAX_CACHE_HINTS} cache hints per request")
            # Every hint kind (Anthropic's ephemeral, OpenAI's explicit breakpoint) is Anthropic's one kind.
            control = {"type": "ephemeral"}
            if hint.ttl:
                control["ttl"] = claude_cache_ttl(self.provider, path, hint.ttl)
            block["cache_control"] = control
        return block

    def image(self, image: chat_pb2.ImageContent, path: str) -> dict[str, Any]:
        url = image.url
        if url.startswith("data:"):
            header, _, data = url.partition(",")
            media_type = header[5:].split(";", 1)[0]
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        if url.startswith(("http://", "https://")):
            return {"type": "image", "source": {"type": "url", "url": url}}
        raise self.refuse(path, "an image must be an http(s) URL or a data: URL")

    def document(self, file: chat_pb2.FileContent, path: str) -> dict[str, Any]:
        if file.file_id:
            raise self.refuse(path, "a file id names a file uploaded to another provider")
        if file.content:
            source: dict[str, Any] = {"type": "content", "content": _text_blocks(file.content)}
        elif file.file_data:
            source = self.document_source(file, path)
        elif file.url.startswith(("http://", "https://")):
            source = {"type": "url", "url": file.url}
        else:
            raise self.refuse(path, "a file needs data or an http(s) URL")
        block: dict[str, Any] = {"type": "document", "source": source}
        title = file.title or file.filename
        if title:
            block["title"] = title
        if file.context:
            block["context"] = file.context
        if file.HasField("citations"):
            block["citations"] = {"enabled": file.citations}
        return block

    def document_source(self, file: chat_pb2.FileContent, path: str) -> dict[str, Any]:
        data, media_type = file.file_data, file.media_type
        if data.startswith("data:"):
            header, _, data = data.partition(",")
            media_type = media_type or header[5:].split(";", 1)[0]
        if media_type not in _DOCUMENT_TYPES:
            raise self.refuse(path, f"documents must be PDF or plain text, not {media_type or 'untyped'}")
        if media_type == "application/pdf":
            return {"type": "base64", "media_type": media_type, "data": data}
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise self.refuse(path, "a text/plain file must be base64 of UTF-8 text") from exc
        return {"type": "text", "media_type": "text/plain", "data": text}

    def part(self, part: chat_pb2.ContentPart, path: str, role: str) -> dict[str, Any]:
        kind = part.WhichOneof("kind")
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": part.text}
            if part.citations_json:
                block["citations"] = orjson.Fragment(part.citations_json)  # as the reply carried them
        elif kind == "image" and role in ("user", "tool"):
            block = self.image(part.image, path)
        elif kind == "file" and role in ("user", "tool"):
            block = self.document(part.file, path)
        elif kind == "search_result" and role in ("user", "tool"):
            found = part.search_result
            block = {
                "type": "search_result",
                "source": found.source,
                "title": found.title,
                "content": _text_blocks(found.content),
            }
            if found.HasField("citations"):
                block["citations"] = {"enabled": found.citations}
        elif kind == "refusal" and role == "assistant":
            # Messages has no refusal block: the refusal is what the assistant said.
            block = {"type": "text", "text": part.refusal}
        elif kind == "thinking" and role == "assistant":
            if part.HasField("cache_control"):
                raise self.refuse(path + ".cache_control", "thinking blocks cannot carry a cache hint")
            thinking = part.thinking
            if thinking.redacted_data:
                return {"type": "redacted_thinking", "data": thinking.redacted_data}
            return {"type": "thinking", "thinking": thinking.thinking, "signature": thinking.signature}
        else:
            raise self.refuse(path, f"a {kind} part in a {role} message")
        return self.cache(block, part.cache_control, part.HasField("cache_control"), f"{path}.cache_control")

    def blocks(self, message: chat_pb2.ChatMessage, path: str, role: str) -> list[dict[str, Any]]:
        if not message.parts:
            return [{"type": "text", "text": message.content}] if message.content else []
        # Gemini's thinking is signed for Gemini: Claude would refuse its signature. Messages refuses an
        # empty text block, and one without a cache hint says nothing.
        kept = [(j, p) for j, p in enumerate(message.parts) if not (from_gemini(p) or _blank(p))]
        return [self.part(p, f"{path}.content[{j}]", role) for j, p in kept]

    # Messages.

    def system(self, message: chat_pb2.ChatMessage, path: str) -> list[dict[str, Any]]:
        for j, part in enumerate(message.parts):
            if part.WhichOneof("kind") != "text":
                raise self.refuse(f"{path}.content[{j}]", "system prompts take text only")
        # Empty text blocks are refused by Messages; an empty system message says nothing.
        return [b for b in self.blocks(message, path, "system") if b["text"]]

    def tool_result(self, message: chat_pb2.ChatMessage, path: str) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": claude_tool_id(message.tool_call_id)}
        if message.parts:
            inner = []
            for j, part in enumerate(message.parts):
                if part.WhichOneof("kind") not in ("text", "image", "file", "search_result"):
                    raise self.refuse(
                        f"{path}.content[{j}]", "tool results take text, images, documents and search results"
                    )
                inner.append(self.part(part, f"{path}.content[{j}]", "tool"))
            block["content"] = inner
        elif message.content:
            block["content"] = message.content
        if message.is_error:
            block["is_error"] = True
        return block

    def tool_use(self, call: chat_pb2.ToolCall, path: str) -> dict[str, Any]:
        if call.type not in ("", "function"):
            raise self.refuse(path, f"{call.type} tool calls")
        try:
            arguments = orjson.loads(call.arguments) if call.arguments else {}
        except orjson.JSONDecodeError as exc:
            raise self.refuse(f"{path}.function.arguments", "arguments must be a JSON object") from exc
        if not isinstance(arguments, dict):
            raise self.refuse(f"{path}.function.arguments", "arguments must be a JSON object")
        self.called.append(name := call.function_name)  # recalled when the request offers no tools
        return {"type": "tool_use", "id": claude_tool_id(call.id), "name": name, "input": arguments}

    def assistant(self, message: chat_pb2.ChatMessage, path: str) -> list[dict[str, Any]]:
        if message.audio_id:
            raise self.refuse(f"{path}.audio", "audio replies")
        blocks = self.blocks(message, path, "assistant")
        if message.refusal:
            blocks.append({"type": "text", "text": message.refusal})
        blocks.extend(self.tool_use(c, f"{path}.tool_calls[{k}]") for k, c in enumerate(message.tool_calls))
        return blocks

    def messages(self, messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(system blocks, turns). Consecutive messages of one role share a turn: parallel tool results
        must, and Messages would merge them anyway."""
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            path, role = f"messages[{i}]", message.role
            if role in ("system", "developer"):
                system.extend(self.system(message, path))
                continue
            if role == "tool":
                blocks, turn_role = [self.tool_result(message, path)], "user"
            elif role == "assistant":
                blocks, turn_role = self.assistant(message, path), "assistant"
            elif role == "user":
                blocks, turn_role = self.blocks(message, path, "user"), "user"
            else:
                raise self.refuse(f"{path}.role", f"role {role!r}")
            if role != "tool" and message.name:
                raise self.refuse(f"{path}.name", "Messages has no participant names")
            if role == "assistant" and not blocks and not message.content:
                continue  # a turn of Gemini's reasoning only: nothing Claude can read
            if turns and turns[-1]["role"] == turn_role:
                _merge(turns[-1], blocks)
            elif role in ("user", "assistant") and _plain(message):
                turns.append({"role": turn_role, "content": message.content})
            else:
                turns.append({"role": turn_role, "content": blocks})
        return system, turns

    # Parameters.

    def tools(self, tools: Any) -> list[dict[str, Any]]:
        out = []
        for k, tool in enumerate(tools):
            if tool.type not in ("", "function"):
                raise self.refuse(f"tools[{k}]", f"{tool.type} tools")
            try:
                schema = orjson.loads(tool.parameters_json) if tool.parameters_json else None
            except orjson.JSONDecodeError as exc:
                raise self.refuse(f"tools[{k}].function.parameters", "not JSON") from exc
            entry: dict[str, Any] = {
                "name": tool.name,
                "input_schema": schema or {"type": "object", "properties": {}},
            }
            if tool.description:
                entry["description"] = tool.description
            if tool.HasField("strict"):
                entry["strict"] = tool.strict
            if tool.HasField("eager_input_streaming"):
                entry["eager_input_streaming"] = tool.eager_input_streaming
            if tool.input_examples_json:
                entry["input_examples"] = orjson.Fragment(tool.input_examples_json)
            hinted = tool.HasField("cache_control")
            out.append(self.cache(entry, tool.cache_control, hinted, f"tools[{k}].cache_control"))
        return out

    def tool_choice(self, params: chat_pb2.GenerationParams) -> dict[str, Any] | None:
        mode = params.tool_choice.mode if params.HasField("tool_choice") else ""
        if mode == "function":
            choice: dict[str, Any] = {"type": "tool", "name": params.tool_choice.name}
        elif mode in _TOOL_CHOICES:
            choice = dict(_TOOL_CHOICES[mode])
        elif mode:
            raise self.refuse("tool_choice", f"mode {mode!r}")
        else:
            choice = {"type": "auto"}
        if params.HasField("parallel_tool_calls") and not params.parallel_tool_calls:
            if choice["type"] != "none":  # with no tool calls at all there is nothing to serialise
                choice["disable_parallel_tool_use"] = True
        elif not mode:
            return None
        return choice

    def thinking(
        self, params: chat_pb2.GenerationParams, max_tokens: int | None, adaptive_model: bool = False
    ) -> tuple[Any, int]:
        """(the thinking setting or None, max_tokens). Thinking counts toward max_tokens, which must
        exceed the budget: a limit at or below it becomes budget plus that limit."""
        reasoning = params.reasoning
        default = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        if reasoning.disabled or reasoning.effort == "none":
            return {"type": "disabled"}, default
        if (adaptive := adaptive_thinking(reasoning, adaptive_model)) is not None:
            # The model decides; output_config.effort (written with the other options) guides it.
            return adaptive, default
        if reasoning.HasField("budget_tokens"):
            budget = reasoning.budget_tokens
        elif reasoning.effort == "max":
            # Anthropic's own effort, sent as output_config.effort; no thinking was asked for.
            return None, default
        elif reasoning.effort:
            if reasoning.effort not in EFFORT_BUDGETS:
                raise self.refuse("reasoning_effort", f"effort {reasoning.effort!r}")
            budget = EFFORT_BUDGETS[reasoning.effort]
        else:
            return None, default
        thinking: dict[str, Any] = {"type": "enabled", "budget_tokens": budget}
        if display := thinking_display(reasoning):
            thinking["display"] = display
        if max_tokens is None:
            return thinking, budget + DEFAULT_MAX_TOKENS
        return thinking, max_tokens if max_tokens > budget else budget + max_tokens

    def response_format(self, fmt: chat_pb2.ResponseFormat) -> dict[str, Any] | None:
        if fmt.type in ("", "text"):
            return None
        if fmt.type != "json_schema":
            raise self.refuse("response_format", f"type {fmt.type!r}: Messages takes a JSON schema only")
        try:
            schema = orjson.loads(fmt.schema_json)
        except orjson.JSONDecodeError as exc:
            raise self.refuse("response_format.json_schema.schema", "not JSON") from exc
        return {"format": {"type": "json_schema", "schema": schema}}


def _blank(part: chat_pb2.ContentPart) -> bool:
    return blank_text(part) and not part.HasField("cache_control")


def _plain(message: chat_pb2.ChatMessage) -> bool:
    """A message that is only its text, sent as the string it came as (an assistant's must have some)."""
    if message.role == "user":
        return not message.parts
    return bool(message.content) and not (
        message.parts or message.tool_calls or message.refusal or message.audio_id
    )


def _merge(turn: dict[str, Any], blocks: list[dict[str, Any]]) -> None:
    """Add a message's blocks to the turn before it (same role). Tool results go ahead of the turn's other
    blocks: Messages wants them first in their user turn."""
    content = turn["content"]
    if isinstance(content, str):
        content = turn["content"] = [{"type": "text", "text": content}]
    if blocks and blocks[0]["type"] == "tool_result":
        at = next((k for k, b in enumerate(content) if b["type"] != "tool_result"), len(content))
        content[at:at] = blocks
    else:
        content.extend(blocks)


def _refuse_unexpressible(enc: _Encoder, params: chat_pb2.GenerationParams) -> None:
    """Parameters with no Messages equivalent (routing filters such candidates; this is the backstop)."""
    present = [
        ("seed", params.HasField("seed")),
        # A zero penalty is the default, honoured by leaving it out.
        ("presence_penalty", params.presence_penalty != 0),
        ("frequency_penalty", params.frequency_penalty != 0),
        ("logprobs", params.logprobs),
        ("top_logprobs", params.top_logprobs > 0),
        ("logit_bias", bool(params.logit_bias)),
        ("n", params.n > 1),
        ("prediction", params.HasField("prediction")),
        ("modalities", any(m != "text" for m in params.modalities)),
        ("audio", params.HasField("audio")),
        # OpenAI's default verbosity is Claude's by omission.
        ("verbosity", params.verbosity not in ("", "medium")),
        ("store", params.store),
        *((name, True) for name in params.openai_options),
    ]
    for name, is_set in present:
        if is_set:
            raise enc.refuse(name, "no Anthropic Messages equivalent")


def _adaptive(reasoning: chat_pb2.Reasoning, adaptive_model: bool) -> bool:
    """Whether thinking goes as adaptive: asked so, or asked at all of a model that takes nothing else."""
    if reasoning.adaptive:
        return True
    asked = bool(reasoning.effort) or reasoning.HasField("budget_tokens") or reasoning.include_thoughts
    return adaptive_model and asked and reasoning.effort != "max"


def adaptive_thinking(reasoning: chat_pb2.Reasoning, adaptive_model: bool) -> dict[str, Any] | None:
    """Claude's adaptive thinking setting for `reasoning` (on Anthropic's API and on Bedrock), or None when
    thinking does not go as adaptive. Disabled thinking is the caller's to check first."""
    if not _adaptive(reasoning, adaptive_model):
        return None
    # Asked as adaptive, the display is the client's; as an effort or a budget, as an enabled one's.
    display = reasoning.display if reasoning.adaptive else thinking_display(reasoning)
    return {"type": "adaptive", "display": display} if display else {"type": "adaptive"}


def thinking_display(reasoning: chat_pb2.Reasoning) -> str:
    """Claude's thinking.display for `reasoning`, empty for the model's default. Without include_thoughts
    the thinking stays hidden, as OpenAI's reasoning does (its signature still comes back, so the block can
    be sent back next turn); a display the client named (or a Responses summary's) goes as named; a
    Messages client that named none gets the model's default, as it would from Anthropic."""
    if reasoning.display:
        return reasoning.display
    return "" if reasoning.include_thoughts else "omitted"


def anthropic_effort(reasoning: chat_pb2.Reasoning, adaptive_model: bool) -> str:
    """output_config.effort: Anthropic's `max` as itself, and with adaptive thinking the effort asked for
    (a budget as its effort; `minimal`, which Anthropic lacks, as `low`)."""
    effort = reasoning.effort
    if effort == "max":
        return effort
    if reasoning.disabled or effort == "none" or not _adaptive(reasoning, adaptive_model):
        return ""
    if not effort and reasoning.HasField("budget_tokens"):
        effort = effort_for_budget(reasoning.budget_tokens)
    return "low" if effort == "minimal" else effort


def _options(
    enc: _Encoder, params: chat_pb2.GenerationParams, body: dict[str, Any], adaptive_model: bool
) -> None:
    body.update(claude_sampling(params))
    if params.HasField("top_k"):
        body["top_k"] = params.top_k
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    user = params.user or params.safety_identifier
    if user:
        body["metadata"] = {"user_id": user}
    if params.service_tier:
        if params.service_tier not in _SERVICE_TIERS:
            raise enc.refuse("service_tier", f"tier {params.service_tier!r}")
        body["service_tier"] = _SERVICE_TIERS[params.service_tier]
    if params.tools:
        body["tools"] = enc.tools(params.tools)
    choice = enc.tool_choice(params)
    if choice is not None:
        body["tool_choice"] = choice
    if params.HasField("response_format"):
        output = enc.response_format(params.response_format)
        if output is not None:
            body["output_config"] = output
    if params.HasField("reasoning") and (effort := anthropic_effort(params.reasoning, adaptive_model)):
        body.setdefault("output_config", {})["effort"] = effort
    if params.HasField("cache_control"):
        enc.cache(body, params.cache_control, True, "cache_control")
    elif not enc.cache_hints and (hint := keyed_cache_hint(params)) is not None:
        # An unmarked request whose client named a cache key is marked whole (automatic caching).
        enc.cache(body, hint, True, "prompt_cache_key")


def _plain_system(messages: Any) -> str:
    """The system prompt when it is one message's plain text (sent as the string it came as), else ''."""
    system = [m for m in messages if m.role in ("system", "developer")]
    if len(system) == 1 and not system[0].parts:
        return str(system[0].content)
    return ""


def encode_anthropic(provider: str, request: ProviderRequest) -> bytes:
    """Our request as a Messages API body. System and developer messages become `system` blocks; tool
    results `tool_result` blocks of a user turn; assistant tool calls `tool_use` blocks."""
    enc = _Encoder(provider)
    params = request.params
    _refuse_unexpressible(enc, params)
    system, turns = enc.messages(request.messages)
    max_tokens = params.max_tokens if params.HasField("max_tokens") else None
    thinking, limit = (
        enc.thinking(params, max_tokens, request.adaptive_thinking)
        if params.HasField("reasoning")
        else (None, None)
    )
    body: dict[str, Any] = {
        "model": request.provider_model,
        "max_tokens": limit
        if limit is not None
        else (DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens),
        "messages": turns,
    }
    if system:
        body["system"] = _plain_system(request.messages) or system
    if request.stream:
        body["stream"] = True
    if thinking is not None:
        body["thinking"] = thinking
    _options(enc, params, body, request.adaptive_thinking)
    for name, raw in params.anthropic_options.items():
        body[name] = orjson.Fragment(raw)  # Anthropic's own options, as the client sent them
    if enc.called and "tools" not in body:
        body["tools"], body["tool_choice"] = recalled_tools(enc.called), {"type": "none"}
    if thinking is not None and thinking["type"] == "enabled":
        _refuse_with_thinking(enc, body)
    return orjson.dumps(body)


def _refuse_with_thinking(enc: _Encoder, body: dict[str, Any]) -> None:
    """What Messages refuses next to extended thinking, refused here by name instead of after a call."""
    if body.get("temperature", 1) != 1:
        raise enc.refuse("temperature", "with thinking, Messages takes only temperature 1")
    if "top_k" in body:
        raise enc.refuse("top_k", "Messages does not take top_k with thinking")
    if body.get("tool_choice", {}).get("type") in ("any", "tool"):
        raise enc.refuse("tool_choice", "Messages cannot force a tool call while thinking")
