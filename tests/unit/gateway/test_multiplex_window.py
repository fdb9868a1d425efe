"""The gateway's Multiplex stream over HTTP: a reply past the credit window arrives whole."""

from __future__ import annotations

import httpx
import orjson


async def test_a_reply_larger_than_the_multiplex_window_arrives_whole(live, api_key, adapters) -> None:
    """200 KiB streamed through the gateway's Multiplex stream: the adapters wait for credits past the
    64 KiB window and the gateway sends them as its client reads."""
    body = {"model": "bulk", "stream": True, "messages": [{"role": "user", "content": "much"}]}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{live.port}", headers={"authorization": f"Bearer {api_key}"}, timeout=10
    ) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as stream:
            assert stream.status_code == 200
            events = [line async for line in stream.aiter_lines() if line.startswith("data: {")]
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events
        for choice in orjson.loads(event[6:])["choices"]
    )
    assert text == "".join(f"{i:04d}" * 512 for i in range(100))
    assert adapters[1].multiplex_streams == 1
