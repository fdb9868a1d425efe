"""A Responses request's `instructions` and `input` items as the internal conversation (ChatMessage list)."""

from __future__ import annotations

from atp.common.v1 import chat_pb2
from atp_common.errors import InvalidArgument
from atp_gateway.dialects.json_fields import Obj, Source, item_obj

__all__ = ["REDACTED_PREFIX", "conversation"]

# A reasoning item that carries Anthropic's redacted thinking: its opaque data travels in
# encrypted_content behind this prefix, so the client can send it back unchanged in a later turn.
REDACTED_PREFIX = "atp-redacted:"
_MAX_ITEMS = 4096
_ROLES = ("user", "assistant", "system", "developer")
_STATUSES = ("in_progress", "completed", "incomplete")


def conversation(obj: Obj) -> tuple[list[chat_pb2.ChatMessage], list[Source]]:
    """`instructions` as a leading system message, then every input item in order; and where each
    message came from in the body (for errors about a message: json_fields.dialect_path)."""
    messages: list[chat_pb2.ChatMessage] = []
    sources: list[Source] = []
    if (instructions := obj.text("instructions")) is not None:
        messages.append(chat_pb2.ChatMessage(role="system", content=instructions))
        sources.append(("instructions", None))
    value = obj.value.get("input")
    if isinstance(value, str):
        messages.append(chat_pb2.ChatMessage(role="user", content=value))
        sources.append(("input", None))
        return messages, sources
    items = obj.array("input", required=True, max_items=_MAX_ITEMS)
    for i, raw in enumerate(items):
        before = len(messages)
        _item(item_obj(raw, "input", i), messages)
        # A message item's parts keep their order, as do a function output's; merged assistant turns do not.
        kind = raw.get("type") or "message"
        content = ".output" if kind == "function_call_output" else None
        if kind == "message" and raw.get("role") != "assistant":
            content = ".content"
        sources += [(f"input[{i}]", content)] * (len(messages) - before)
    if not any(m.role not in ("system", "developer") for m in messages):
        raise InvalidArgument("'input' must hold at least one message or item.", param="input")
    return messages, sources


def _item(item: Obj, messages: list[chat_pb2.ChatMessage]) -> None:
    kind = item.text("type") or "message"
    if kind == "message":
        _message(item, messages)
    elif kind == "function_call":
        item.known(("type", "id", "call_id", "name", "arguments", "status"), required=("call_id", "name"))
        item.text("status", choices=_STATUSES)
        _assistant(messages).tool_calls.append(
            chat_pb2.ToolCall(
                id=item.text("call_id", required=True, max_length=256) or "",
                type="function",
                function_name=item.text("name", required=True, max_length=256) or "",
                arguments=item.text("arguments", required=True) or "",
            )
        )
    elif kind == "custom_tool_call":
        item.known(
            ("type", "id", "call_id", "name", "input", "status"), required=("call_id", "name", "input")
        )
        _assistant(messages).tool_calls.append(
            chat_pb2.ToolCall(
                id=item.text("call_id", required=True, max_length=256) or "",
                type="custom",
                function_name=item.text("name", required=True, max_length=256) or "",
                arguments=item.text("input", required=True) or "",
            )
        )
    elif kind in ("function_call_output", "custom_tool_call_output"):
        item.known(("type", "id", "call_id", "output", "status"), required=("call_id", "output"))
        item.text("status", choices=_STATUSES)
        result = chat_pb2.ChatMessage(role="tool", tool_call_id=item.text("call_id", required=True) or "")
        if isinstance(item.value["output"], str):
            result.content = item.value["output"]
        else:
            result.parts.extend(_parts(item, "output"))
        messages.append(result)
    elif kind == "reasoning":
        _reasoning(item, messages)
    else:
        path = item.at("type")
        raise InvalidArgument(
            f"Unsupported input item type '{kind}' at '{path}': ATP is stateless and offers function and "
            "custom tools only (send messages, function calls and their outputs).",
            param=path,
        )


def _assistant(messages: list[chat_pb2.ChatMessage]) -> chat_pb2.ChatMessage:
    """The assistant turn the next output item belongs to: Responses lists a turn's message, reasoning and
    function calls as separate items, chat holds them in one assistant message."""
    if messages and messages[-1].role == "assistant":
        return messages[-1]
    messages.append(chat_pb2.ChatMessage(role="assistant"))
    return messages[-1]


def _message(item: Obj, messages: list[chat_pb2.ChatMessage]) -> None:
    item.known(("type", "role", "content", "id", "status", "phase"), required=("role", "content"))
    role = item.text("role", required=True, choices=_ROLES) or ""
    item.text("status", choices=_STATUSES)
    if item.text("phase", choices=("commentary", "final_answer")) is not None:
        raise item.invalid("phase", "assistant phases are specific to OpenAI's own models; leave it out.")
    if role == "assistant":
        turn = _assistant(messages)
        if turn.tool_calls:
            # Text after a function call starts a new turn; chat cannot put text after tool calls.
            turn = chat_pb2.ChatMessage(role="assistant")
            messages.append(turn)
    else:
        turn = chat_pb2.ChatMessage(role=role)
        messages.append(turn)
    content = item.value["content"]
    if isinstance(content, str) and not (turn.content or turn.parts):
        turn.content = content
        return
    if isinstance(content, str):
        parts = [chat_pb2.ContentPart(text=content)]
    else:
        parts = _parts(item, "content", assistant=role == "assistant")
    if turn.content:
        turn.parts.append(chat_pb2.ContentPart(text=turn.content))
        turn.content = ""
    turn.parts.extend(parts)


def _parts(item: Obj, key: str, *, assistant: bool = False) -> list[chat_pb2.ContentPart]:
    return [_part(part, assistant) for part in item.objects(key, required=True, max_items=_MAX_ITEMS)]


def _part(part: Obj, assistant: bool) -> chat_pb2.ContentPart:
    kind = part.text("type", required=True)
    if kind == "output_text" and assistant:
        part.known(("type", "text", "annotations", "logprobs"), required=("text",))
        if part.array("annotations") or part.array("logprobs"):
            # Citations and log probabilities of an earlier reply mean nothing to a model as input.
            raise part.invalid("annotations", "send earlier replies' text without annotations or logprobs.")
        return chat_pb2.ContentPart(text=part.text("text", required=True) or "")
    if kind == "input_text":
        part.known(("type", "text", "prompt_cache_breakpoint"), required=("text",))
        return _cached(part, chat_pb2.ContentPart(text=part.text("text", required=True) or ""))
    if kind == "refusal" and assistant:
        part.known(("type", "refusal"), required=("refusal",))
        return chat_pb2.ContentPart(refusal=part.text("refusal", required=True) or "")
    if kind == "input_image" and not assistant:
        # The schema lists `detail` as required, but the API defaults it to auto and OpenAI's own
        # examples leave it out: refusing its absence refused what OpenAI serves.
        part.known(("type", "image_url", "file_id", "detail", "prompt_cache_breakpoint"))
        if "file_id" in part:
            raise part.invalid("file_id", "images by file id need OpenAI's file store; send 'image_url'.")
        url = part.text("image_url", required=True) or ""
        detail = part.text("detail", choices=("auto", "low", "high", "original")) or ""
        if detail == "original":
            raise part.invalid("detail", "'original' is specific to OpenAI; use 'auto', 'low' or 'high'.")
        return _cached(part, chat_pb2.ContentPart(image=chat_pb2.ImageContent(url=url, detail=detail)))
    if kind == "input_file" and not assistant:
        part.known(
            ("type", "file_id", "file_data", "file_url", "filename", "detail", "prompt_cache_breakpoint")
        )
        if part.text("detail", choices=("auto", "low", "high")) not in (None, "auto"):
            raise part.invalid("detail", "only 'auto' is supported for files.")
        file = chat_pb2.FileContent(
            file_id=part.text("file_id") or "",
            file_data=part.text("file_data") or "",
            url=part.text("file_url") or "",
            filename=part.text("filename", max_length=1024) or "",
        )
        if not (file.file_id or file.file_data or file.url):
            raise part.invalid("file_data", "an input_file needs 'file_data', 'file_url' or 'file_id'.")
        return _cached(part, chat_pb2.ContentPart(file=file))
    if kind == "input_audio" and not assistant:
        part.known(("type", "input_audio"), required=("input_audio",))
        audio = part.object("input_audio", required=True)
        assert audio is not None
        audio.known(("data", "format"), required=("data", "format"))
        return chat_pb2.ContentPart(
            audio=chat_pb2.AudioContent(
                data=audio.text("data", required=True) or "",
                format=audio.text("format", required=True, choices=("mp3", "wav")) or "",
            )
        )
    path = part.at("type")
    who = "assistant" if assistant else "input"
    raise InvalidArgument(f"Unsupported {who} content type '{kind}' at '{path}'.", param=path)


def _cached(part: Obj, content: chat_pb2.ContentPart) -> chat_pb2.ContentPart:
    """The part with its prompt_cache_breakpoint as an `explicit` cache hint (the chat dialect's mapping)."""
    breakpoint_ = part.object("prompt_cache_breakpoint")
    if breakpoint_ is not None:
        breakpoint_.known(("mode", "ttl"), required=("mode",))
        breakpoint_.text("mode", required=True, choices=("explicit",))
        content.cache_control.type = "explicit"
        content.cache_control.ttl = breakpoint_.text("ttl", choices=("30m", "12h")) or ""
    return content


def _reasoning(item: Obj, messages: list[chat_pb2.ChatMessage]) -> None:
    item.known(("type", "id", "summary", "content", "encrypted_content", "status"), required=("summary",))
    item.text("status", choices=_STATUSES)
    texts = [_reasoning_text(part, "reasoning_text") for part in item.objects("content")]
    summaries = [_reasoning_text(part, "summary_text") for part in item.objects("summary", required=True)]
    sealed = item.text("encrypted_content") or ""
    thinking = chat_pb2.ThinkingContent(thinking="".join(texts) if texts else "\n\n".join(summaries))
    if sealed.startswith(REDACTED_PREFIX):
        thinking.redacted_data = sealed.removeprefix(REDACTED_PREFIX)
    else:
        thinking.signature = sealed
    if not (thinking.thinking or thinking.signature or thinking.redacted_data):
        return
    turn = _assistant(messages)
    if turn.content:
        turn.parts.append(chat_pb2.ContentPart(text=turn.content))
        turn.content = ""
    turn.parts.append(chat_pb2.ContentPart(thinking=thinking))


def _reasoning_text(part: Obj, kind: str) -> str:
    part.known(("type", "text"), required=("type", "text"))
    part.text("type", choices=(kind,))
    return part.text("text", required=True) or ""
