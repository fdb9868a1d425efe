"""The prompt as stored for tenants that opted in: text as sent, media by reference, never inline data."""

from __future__ import annotations

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.observations import prompt_text


def test_every_part_kind_is_stored_with_its_text_and_without_inline_data() -> None:
    parts = [
        chat_pb2.ContentPart(text="hello"),
        chat_pb2.ContentPart(refusal="no"),
        chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="data:image/png;base64,AAAA")),
        chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="https://x.test/a.png")),
        chat_pb2.ContentPart(
            file=chat_pb2.FileContent(filename="a.pdf", file_data="data:application/pdf;base64,QQ==")
        ),
        chat_pb2.ContentPart(file=chat_pb2.FileContent(title="Contract", content=["Clause 1.", "Clause 2."])),
        chat_pb2.ContentPart(
            search_result=chat_pb2.SearchResultContent(
                source="kb://1", title="Rome", content=["Sunny.", "Warm."]
            )
        ),
        chat_pb2.ContentPart(audio=chat_pb2.AudioContent(data="UklG", format="wav")),
    ]
    stored = orjson.loads(prompt_text([chat_pb2.ChatMessage(role="user", parts=parts)]))
    assert stored == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "refusal", "refusal": "no"},
                {"type": "image", "url": "data: (26 chars)"},
                {"type": "image", "url": "https://x.test/a.png"},
                {"type": "file", "file_id": "", "filename": "a.pdf", "url": ""},
                {"type": "file", "file_id": "", "filename": "", "url": "", "text": "Clause 1.\nClause 2."},
                {"type": "search_result", "source": "kb://1", "title": "Rome", "text": "Sunny.\nWarm."},
                {"type": "audio"},
            ],
        }
    ]
    assert "QQ==" not in orjson.dumps(stored).decode() and "UklG" not in orjson.dumps(stored).decode()
