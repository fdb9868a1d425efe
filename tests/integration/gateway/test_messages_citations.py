"""Claude's document citations with the anthropic SDK through the gateway: whole in the reply, whole when sent back."""

from __future__ import annotations

import anthropic
import pytest
from anthropic.types import Message

from tests.fakes.anthropic_server import AnthropicExtras
from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import anthropic_message

DOCUMENT = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green. The sky is blue."},
    "title": "Facts",
    "citations": {"enabled": True},
}
CITATIONS = [
    {
        "type": "char_location",
        "cited_text": "The sky is blue.",
        "document_index": 0,
        "document_title": "Facts",
        "start_char_index": 20,
        "end_char_index": 36,
        "file_id": None,
    },
    {
        "type": "page_location",
        "cited_text": "page two",
        "document_index": 1,
        "document_title": None,
        "start_page_number": 2,
        "end_page_number": 3,
        "file_id": None,
    },
]
QUESTION = {"role": "user", "content": [DOCUMENT, {"type": "text", "text": "What colour is the sky?"}]}


async def _first_turn(dialects: DialectStack, sdk: anthropic.AsyncAnthropic, stream: bool) -> Message:
    dialects.anthropic.extras = AnthropicExtras(citations=CITATIONS)
    return await anthropic_message(sdk, stream, model="claude", max_tokens=256, messages=[QUESTION])


@pytest.mark.parametrize("stream", [False, True])
async def test_a_citation_reaches_the_client_whole_and_goes_back_whole(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, stream: bool
) -> None:
    reply = await _first_turn(dialects, anthropic_sdk, stream)
    (text,) = [block for block in reply.content if block.type == "text"]
    # Which document, and where in it: before, every citation came back as document 0, characters 0..n.
    assert [c.model_dump() for c in text.citations or ()] == CITATIONS
    dialects.anthropic.extras = AnthropicExtras()
    history = [
        QUESTION,
        {"role": "assistant", "content": reply.content},
        {"role": "user", "content": "And grass?"},
    ]
    await anthropic_sdk.messages.create(model="claude", max_tokens=256, messages=history)
    sent = dialects.anthropic.requests[-1].body["messages"][1]["content"]
    sent_text = [block for block in sent if block["type"] == "text"]
    assert sent_text == [{"type": "text", "text": text.text, "citations": CITATIONS}]


async def test_citations_sent_back_keep_a_conversation_to_providers_that_take_them(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    answer = {"type": "text", "text": "Blue.", "citations": CITATIONS[:1]}
    history = [
        {"role": "user", "content": "What colour is the sky?"},
        {"role": "assistant", "content": [answer]},
        {"role": "user", "content": "Sure?"},
    ]
    # The route mixes Claude and GPT: GPT is filtered out, so Claude serves it wherever it ranks.
    await anthropic_sdk.messages.create(model="mixed", max_tokens=64, messages=history)
    assert dialects.anthropic.requests[-1].body["messages"][1]["content"] == [answer]
    with pytest.raises(anthropic.BadRequestError) as refused:
        await anthropic_sdk.messages.create(model="gpt", max_tokens=64, messages=history)
    assert "citations" in refused.value.message
    assert not dialects.openai.requests
    with pytest.raises(anthropic.BadRequestError) as invalid:
        await anthropic_sdk.messages.create(
            model="claude",
            max_tokens=64,
            messages=[
                history[0],
                {"role": "assistant", "content": [{**answer, "citations": [{"type": "x"}]}]},
            ],
        )
    assert "messages[1].content[0].citations[0].type" in invalid.value.message
