"""HeadHoldingTransport: a reply's head leaves with its body's first write, never later than the loop's next turn."""

from __future__ import annotations

import asyncio

import httpx

from atp_gateway.edge import HeadHoldingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """Where the bytes go: each write as the socket would get it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def write_eof(self) -> None:
        self.events.append("eof")

    def abort(self) -> None:
        self.events.append("abort")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    sink = RecordingTransport()
    transport = HeadHoldingTransport(sink, asyncio.get_running_loop())
    transport.write(HEAD)
    assert sink.writes == []
    transport.write(b"ok")
    assert sink.writes == [HEAD + b"ok"]
    await asyncio.sleep(0)
    assert sink.writes == [HEAD + b"ok"]  # the scheduled flush finds nothing held


async def test_a_head_without_a_body_leaves_on_the_loops_next_turn() -> None:
    sink = RecordingTransport()
    transport = HeadHoldingTransport(sink, asyncio.get_running_loop())
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert sink.writes == [HEAD]
    transport.write(b"later")
    assert sink.writes == [HEAD, b"later"]


async def test_a_large_body_follows_its_head_without_a_copy_and_order_holds() -> None:
    sink = RecordingTransport()
    transport = HeadHoldingTransport(sink, asyncio.get_running_loop())
    body = b"x" * (128 * 1024)
    transport.write(HEAD)
    transport.write(body)
    transport.write(b"tail")
    assert sink.writes == [HEAD, body, b"tail"]


async def test_closing_sends_what_is_held_first_and_abort_drops_it() -> None:
    sink = RecordingTransport()
    transport = HeadHoldingTransport(sink, asyncio.get_running_loop())
    transport.write(HEAD)
    transport.write_eof()
    assert (sink.writes, sink.events) == ([HEAD], ["eof"])
    transport.write(HEAD)
    transport.close()
    assert (sink.writes, sink.events) == ([HEAD, HEAD], ["eof", "close"])
    assert transport.is_closing()
    transport.write(HEAD)
    transport.abort()
    await asyncio.sleep(0)
    assert sink.writes == [HEAD, HEAD] and sink.events[-1] == "abort"
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)


async def test_replies_and_streams_are_whole_over_a_real_socket(live, api_key) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "one two three"}]}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{live.port}", headers={"authorization": f"Bearer {api_key}"}
    ) as http:
        for _ in range(3):
            reply = await http.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200
            assert reply.json()["choices"][0]["message"]["content"] == "echo: one two three"
        async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
            assert stream.status_code == 200
            text = "".join([chunk async for chunk in stream.aiter_text()])
        assert text.rstrip().endswith("data: [DONE]")
