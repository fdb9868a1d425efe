"""Anthropic Messages `system` and `messages` as the internal conversation (ChatMessage list)."""

from __future__ import annotations

import base64

from atp.common.v1 import chat_pb2
from atp_common.errors import InvalidArgument
from atp_gateway.dialects.json_fields import Obj, Source, dump

__all__ = ["cache_hint", "conversation"]

_MAX_MESSAGES = 4096
_MAX_BLOCKS = 4096
# The citation kinds a Messages reply carries on its text blocks.
_CITATIONS = (
    "char_location",
    "page_location",
    "content_block_location",
    "web_search_result_location",
    "search_result_location",
)


def cache_hint(block: Obj) -> chat_pb2.CacheControl | None:
    """A block's cache_control ({type: ephemeral, ttl}) as the internal hint, or None."""
    control = block.object("cache_control")
    if control is None:
        return None
    control.known(("type", "ttl"), required=("type",))
    return chat_pb2.CacheControl(
        type=control.text("type", required=True, choices=("ephemeral",)) or "",
        ttl=control.text("ttl", choices=("5m", "1h")) or "",
    )


def _cached(block: Obj, part: chat_pb2.ContentPart) -> chat_pb2.ContentPart:
    if (hint := cache_hint(block)) is not None:
        part.cache_control.CopyFrom(hint)
    return part


def conversation(obj: Obj) -> tuple[list[chat_pb2.ChatMessage], list[Source]]:
    """`system` as a leading system message, then each turn; a user turn's tool_result blocks become
    tool messages (in block order, so results stay right after the assistant's calls). Also where each
    message came from in the body (for errors about a message: json_fields.dialect_path)."""
    messages: list[chat_pb2.ChatMessage] = []
    sources: list[Source] = []
    system = obj.value.get("system")
    if isinstance(system, str):
        messages.append(chat_pb2.ChatMessage(role="system", content=system))
        sources.append(("system", None))
    elif system is not None:
        blocks = obj.objects("system", max_items=_MAX_BLOCKS)
        parts = [_text(block) for block in blocks]
        if parts:
            messages.append(chat_pb2.ChatMessage(role="system", parts=parts))
            sources.append(("system", ""))
    for k, turn in enumerate(obj.objects("messages", required=True, min_items=1, max_items=_MAX_MESSAGES)):
        turn.known(("role", "content"), required=("role", "content"))
        role = turn.text("role", required=True, choices=("user", "assistant"))
        before = len(messages)
        if role == "user":
            _user(turn, messages)
        else:
            messages.append(_assistant(turn))
        # A user turn that became one message keeps its blocks' order; split or assistant turns do not.
        exact = role == "user" and len(messages) - before == 1 and messages[-1].role == "user"
        sources += [(f"messages[{k}]", ".content" if exact else None)] * (len(messages) - before)
    return messages, sources


def _blocks(turn: Obj) -> list[Obj] | str:
    content = turn.value["content"]
    if isinstance(content, str):
        return content
    return turn.objects("content", required=True, min_items=1, max_items=_MAX_BLOCKS)


def _text(block: Obj) -> chat_pb2.ContentPart:
    block.known(("type", "text", "cache_control", "citations"), required=("type", "text"))
    block.text("type", choices=("text",))
    part = chat_pb2.ContentPart(text=block.text("text", required=True) or "")
    citations = block.objects("citations", max_items=_MAX_BLOCKS)
    for citation in citations:
        citation.text("type", required=True, choices=_CITATIONS)
    if citations:
        # An earlier reply's citations, sent back as the reply carried them: providers that can take them
        # get them whole, and the others are filtered out (the `citations` feature).
        part.citations_json = dump([citation.value for citation in citations])
    return _cached(block, part)


def _user(turn: Obj, messages: list[chat_pb2.ChatMessage]) -> None:
    blocks = _blocks(turn)
    if isinstance(blocks, str):
        messages.append(chat_pb2.ChatMessage(role="user", content=blocks))
        return
    pending: list[chat_pb2.ContentPart] = []
    for block in blocks:
        kind = block.text("type", required=True)
        if kind == "tool_result":
            if pending:
                messages.append(chat_pb2.ChatMessage(role="user", parts=pending))
                pending = []
            messages.append(_tool_result(block))
        else:
            pending.append(_user_part(block, kind or ""))
    if pending:
        messages.append(chat_pb2.ChatMessage(role="user", parts=pending))


def _user_part(block: Obj, kind: str) -> chat_pb2.ContentPart:
    if kind == "text":
        return _text(block)
    if kind == "image":
        return _image(block)
    if kind == "document":
        return _document(block)
    if kind == "search_result":
        return _search_result(block)
    path = block.at("type")
    raise InvalidArgument(
        f"Unsupported content block type '{kind}' at '{path}': ATP takes text, image, document, "
        "search_result and tool_result blocks in user turns.",
        param=path,
    )


def _citations_switch(block: Obj) -> bool | None:
    """A block's `citations: {enabled}`, or None when it does not say."""
    citations = block.object("citations")
    if citations is None:
        return None
    citations.known(("enabled",))
    return citations.flag("enabled")


def _texts(block: Obj) -> list[str]:
    """The text blocks of a search result's or a content document's `content` (text only)."""
    texts = []
    for inner in block.objects("content", required=True, min_items=1, max_items=_MAX_BLOCKS):
        inner.text("type", required=True, choices=("text",))
        inner.known(("type", "text", "cache_control", "citations"), required=("type", "text"))
        if inner.value.get("citations") or inner.value.get("cache_control"):
            key = "citations" if inner.value.get("citations") else "cache_control"
            raise inner.invalid(key, "the blocks inside take text alone.")
        texts.append(inner.text("text", required=True) or "")
    return texts


def _search_result(block: Obj) -> chat_pb2.ContentPart:
    block.known(
        ("type", "source", "title", "content", "citations", "cache_control"),
        required=("source", "title", "content"),
    )
    result = chat_pb2.SearchResultContent(
        source=block.text("source", required=True, max_length=4096) or "",
        title=block.text("title", required=True, max_length=4096) or "",
        content=_texts(block),
    )
    if (enabled := _citations_switch(block)) is not None:
        result.citations = enabled
    return _cached(block, chat_pb2.ContentPart(search_result=result))


def _source(block: Obj, kinds: tuple[str, ...]) -> tuple[Obj, str]:
    source = block.object("source", required=True)
    assert source is not None
    kind = source.text("type", required=True) or ""
    if kind not in kinds:
        path = source.at("type")
        raise InvalidArgument(
            f"Unsupported source type '{kind}' at '{path}': ATP takes {', '.join(kinds)}.", param=path
        )
    return source, kind


def _image(block: Obj) -> chat_pb2.ContentPart:
    block.known(("type", "source", "cache_control"), required=("source",))
    source, kind = _source(block, ("base64", "url"))
    if kind == "url":
        source.known(("type", "url"), required=("url",))
        url = source.text("url", required=True) or ""
    else:
        source.known(("type", "media_type", "data"), required=("media_type", "data"))
        media_type = source.text(
            "media_type", required=True, choices=("image/jpeg", "image/png", "image/gif", "image/webp")
        )
        url = f"data:{media_type};base64,{source.text('data', required=True)}"
    return _cached(block, chat_pb2.ContentPart(image=chat_pb2.ImageContent(url=url)))


def _document(block: Obj) -> chat_pb2.ContentPart:
    block.known(("type", "source", "cache_control", "citations", "context", "title"), required=("source",))
    source, kind = _source(block, ("base64", "text", "content", "url", "file"))
    file = chat_pb2.FileContent(
        title=block.text("title", max_length=4096) or "", context=block.text("context") or ""
    )
    if (enabled := _citations_switch(block)) is not None:
        file.citations = enabled
    if kind == "content":
        source.known(("type", "content"), required=("content",))
        text = source.value["content"]
        file.content.extend([text] if isinstance(text, str) else _texts(source))
    elif kind == "base64":
        source.known(("type", "media_type", "data"), required=("media_type", "data"))
        file.media_type = source.text("media_type", required=True, choices=("application/pdf",)) or ""
        file.file_data = source.text("data", required=True) or ""
    elif kind == "text":
        source.known(("type", "media_type", "data"), required=("media_type", "data"))
        file.media_type = source.text("media_type", required=True, choices=("text/plain",)) or ""
        # Plain text travels base64-encoded like any file's data (the providers decode it back).
        file.file_data = base64.b64encode((source.text("data", required=True) or "").encode()).decode()
    elif kind == "url":
        source.known(("type", "url"), required=("url",))
        file.url = source.text("url", required=True) or ""
    else:
        source.known(("type", "file_id"), required=("file_id",))
        file.file_id = source.text("file_id", required=True) or ""
    return _cached(block, chat_pb2.ContentPart(file=file))


def _tool_result(block: Obj) -> chat_pb2.ChatMessage:
    block.known(("type", "tool_use_id", "content", "is_error", "cache_control"), required=("tool_use_id",))
    result = chat_pb2.ChatMessage(
        role="tool",
        tool_call_id=block.text("tool_use_id", required=True, max_length=256) or "",
        is_error=bool(block.flag("is_error")),
    )
    content = block.value.get("content")
    hint = cache_hint(block)
    if isinstance(content, str) and hint is None:
        result.content = content
        return result
    if isinstance(content, str):
        result.parts.append(chat_pb2.ContentPart(text=content))
    else:
        for part in block.objects("content", max_items=_MAX_BLOCKS):
            result.parts.append(_user_part(part, part.text("type", required=True) or ""))
    if hint is not None:
        # The block's hint marks the end of the result: its last part carries it.
        if not result.parts:
            result.parts.append(chat_pb2.ContentPart(text=""))
        result.parts[-1].cache_control.CopyFrom(hint)
    return result


def _assistant(turn: Obj) -> chat_pb2.ChatMessage:
    message = chat_pb2.ChatMessage(role="assistant")
    blocks = _blocks(turn)
    if isinstance(blocks, str):
        message.content = blocks
        return message
    for block in blocks:
        kind = block.text("type", required=True)
        if kind == "text":
            message.parts.append(_text(block))
        elif kind == "thinking":
            block.known(("type", "thinking", "signature"), required=("thinking", "signature"))
            thinking = chat_pb2.ThinkingContent(
                thinking=block.text("thinking", required=True) or "",
                signature=block.text("signature", required=True) or "",
            )
            message.parts.append(chat_pb2.ContentPart(thinking=thinking))
        elif kind == "redacted_thinking":
            block.known(("type", "data"), required=("data",))
            redacted = chat_pb2.ThinkingContent(redacted_data=block.text("data", required=True) or "")
            message.parts.append(chat_pb2.ContentPart(thinking=redacted))
        elif kind == "tool_use":
            block.known(("type", "id", "name", "input"), required=("id", "name", "input"))
            arguments = block.object("input", required=True)
            assert arguments is not None
            message.tool_calls.append(
                chat_pb2.ToolCall(
                    id=block.text("id", required=True, max_length=256) or "",
                    type="function",
                    function_name=block.text("name", required=True, max_length=256) or "",
                    arguments=dump(arguments.value).decode(),
                )
            )
        else:
            path = block.at("type")
            raise InvalidArgument(
                f"Unsupported content block type '{kind}' at '{path}': ATP takes text, thinking, "
                "redacted_thinking and tool_use blocks in assistant turns.",
                param=path,
            )
    return message
