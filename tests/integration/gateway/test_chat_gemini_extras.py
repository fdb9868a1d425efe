"""Gemini's reply fields ATP's typed reply has no place for reach Chat Completions clients as Gemini sent
them, through the real gateway and adapters: a whole reply's at the top, in usage and on each choice; a
stream's top-level and usage fields on its last chunk."""

from __future__ import annotations

import openai
import orjson

from tests.support.dialect_stack import DialectStack

HI = [{"role": "user", "content": "Hello"}]
RATINGS = [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
FEEDBACK = {"safetyRatings": RATINGS}


def _gemini_says_more(dialects: DialectStack) -> None:
    dialects.gemini.reply_extras = {"promptFeedback": FEEDBACK}
    dialects.gemini.usage_extras = {"toolUsePromptTokenCount": 3}
    dialects.gemini.candidate_extras = {"safetyRatings": RATINGS, "avgLogprobs": -0.25}


async def test_a_whole_reply_carries_them_where_gemini_put_them(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    _gemini_says_more(dialects)
    raw = await openai_sdk.chat.completions.with_raw_response.create(model="gem", messages=HI)
    body = orjson.loads(raw.http_response.content)
    assert body["promptFeedback"] == FEEDBACK and body["usage"]["toolUsePromptTokenCount"] == 3
    [choice] = body["choices"]
    assert (choice["safetyRatings"], choice["avgLogprobs"]) == (RATINGS, -0.25)
    assert choice["message"]["content"] and raw.parse().choices[0].message.content


async def test_a_stream_carries_the_top_level_and_usage_ones_last(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    _gemini_says_more(dialects)
    stream = await openai_sdk.chat.completions.create(
        model="gem", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1].model_dump()
    assert last["promptFeedback"] == FEEDBACK and last["usage"]["toolUsePromptTokenCount"] == 3
    # On the finish chunk and the usage chunk, as an OpenAI-compatible server's own are; not before.
    finish = next(k for k, chunk in enumerate(chunks) if chunk.choices and chunk.choices[0].finish_reason)
    assert "promptFeedback" in chunks[finish].model_dump()
    assert not any("promptFeedback" in chunk.model_dump() for chunk in chunks[:finish])


async def test_a_reply_with_nothing_more_has_nothing_more(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    raw = await openai_sdk.chat.completions.with_raw_response.create(model="gem", messages=HI)
    body = orjson.loads(raw.http_response.content)
    assert "promptFeedback" not in body and "safetyRatings" not in body["choices"][0]
