"""The HTTP edge's limits (edge.py) on a real uvicorn socket: head size and count, head deadline, caps."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from atp_gateway.app import create_app
from atp_gateway.serve import GatewayServer


@pytest.fixture
def edge_settings(settings):
    return settings.model_copy(
        update={
            "max_head_bytes": 4096,
            "max_headers": 20,
            "head_timeout_s": 0.5,
            "body_timeout_s": 0.5,
            "max_connections": 40,
            "max_requests": 2,
            "max_unauthenticated_per_ip": 10,
        }
    )


@pytest.fixture
async def edge(edge_settings, config, wait_for):
    server = GatewayServer(edge_settings, create_app(edge_settings, config=config))
    await server.start()
    await wait_for(lambda: server.gateway.ready, what="gateway ready")
    yield server
    await server.stop_now()


async def _exchange(port: int, raw: bytes, timeout_s: float = 5.0) -> bytes:
    """Send `raw`, then read until the server closes (or `timeout_s`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


async def test_a_head_within_the_limits_is_served(edge):
    headers = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(15))
    reply = await _exchange(
        edge.port, b"GET /healthz HTTP/1.1\r\nhost: t\r\n" + headers + b"connection: close\r\n\r\n"
    )
    assert _status(reply) == 200


async def test_an_oversize_header_gets_431_and_the_connection_closes(edge):
    reply = await _exchange(
        edge.port, b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 8000 + b"\r\n\r\n"
    )
    assert _status(reply) == 431
    assert b"connection: close" in reply.lower()
    assert b"limit" in reply


async def test_an_unterminated_oversize_header_is_refused_before_it_ends(edge):
    # No blank line ever comes: the refusal cannot wait for the head to end.
    reply = await _exchange(edge.port, b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 100_000, timeout_s=2)
    assert _status(reply) == 431


async def test_too_many_headers_get_431(edge):
    headers = b"".join(b"x-h%d: v\r\n" % i for i in range(30))
    reply = await _exchange(edge.port, b"GET /healthz HTTP/1.1\r\nhost: t\r\n" + headers + b"\r\n")
    assert _status(reply) == 431
    assert b"Too many request headers" in reply


async def test_a_body_in_the_same_packet_as_the_head_is_not_counted_as_head(edge, api_key):
    body = b'{"model": "auto", "messages": [{"role": "user", "content": "' + b"x" * 20_000 + b'"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (api_key.encode(), len(body))
    )
    reply = await _exchange(edge.port, head + body)
    assert _status(reply) == 200


async def test_a_slow_head_is_closed_with_408_at_the_deadline(edge):
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    reply = b""
    for _ in range(30):
        try:
            reply = await asyncio.wait_for(reader.read(65536), 0.1)
            break
        except TimeoutError:
            writer.write(b"x-a: b\r\n")
    writer.close()
    assert _status(reply) == 408
    assert time.monotonic() - started < 2.0


async def test_a_silent_connection_is_closed_at_the_head_deadline(edge):
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert _status(reply) == 408


def _post_head(api_key: str, length: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer %s\r\ncontent-length: %d\r\n\r\n" % (api_key.encode(), length)
    )


_BODY = b'{"model": "auto", "messages": [{"role": "user", "content": "hello"}]}'


async def test_a_body_held_back_gets_408_at_its_deadline(edge, api_key):
    started = time.monotonic()
    reply = await _exchange(edge.port, _post_head(api_key, len(_BODY)) + _BODY[:10], timeout_s=5)
    assert _status(reply) == 408
    assert b"The request body did not arrive in time." in reply
    assert b"connection: close" in reply.lower()
    assert time.monotonic() - started < 2.0


async def test_a_trickled_body_has_one_deadline_not_one_per_read(edge, api_key):
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(_post_head(api_key, len(_BODY)))
    reply = b""
    for byte in _BODY:
        writer.write(bytes([byte]))
        try:
            reply = await asyncio.wait_for(reader.read(65536), 0.05)
            break
        except TimeoutError:
            continue
    writer.close()
    assert _status(reply) == 408


async def test_a_body_after_its_head_is_served_and_the_deadline_ends_with_it(edge, api_key):
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    try:
        for _ in range(2):
            # Two requests on one connection, each body 0.3 s after its head: 0.6 s in all, past one
            # deadline, so the first request's timer must have ended with its body.
            writer.write(_post_head(api_key, len(_BODY)))
            await asyncio.sleep(0.3)
            writer.write(_BODY)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert _status(head) == 200
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), 5)
    finally:
        writer.close()


async def test_a_reply_sent_before_the_body_stands_and_the_connection_closes_at_the_deadline(edge):
    started = time.monotonic()
    reply = await _exchange(edge.port, _post_head("not-a-key", len(_BODY)), timeout_s=5)
    assert _status(reply) == 401
    assert b"invalid_api_key" in reply
    assert time.monotonic() - started < 2.0


async def test_unauthenticated_connections_beyond_the_share_of_one_address_get_503(edge, api_key):
    held = [await asyncio.open_connection("127.0.0.1", edge.port) for _ in range(10)]
    try:
        reply = await _exchange(edge.port, b"")
        assert _status(reply) == 503
        assert b"retry-after: 1" in reply.lower()
        # A connection that presented credentials no longer counts against its address's share.
        for _reader, writer in held[:2]:
            writer.write(
                b"GET /healthz HTTP/1.1\r\nhost: t\r\nauthorization: Bearer " + api_key.encode() + b"\r\n\r\n"
            )
        heads = await asyncio.gather(*(reader.readuntil(b"\r\n\r\n") for reader, _ in held[:2]))
        assert [_status(head) for head in heads] == [200] * 2, heads
        async with httpx.AsyncClient() as http:
            reply_ok = await http.get(f"http://127.0.0.1:{edge.port}/healthz")
        assert reply_ok.status_code == 200
    finally:
        for _reader, writer in held:
            writer.close()


async def test_requests_beyond_the_in_flight_cap_get_503_with_retry_after(edge, adapters, api_key, wait_for):
    fake = adapters[1]
    url = f"http://127.0.0.1:{edge.port}/v1/chat/completions"
    body = {"model": "hang", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(timeout=10) as http:
        streams = [http.stream("POST", url, json=body, headers=headers) for _ in range(2)]
        opened = [await s.__aenter__() for s in streams]
        try:
            reply = await http.get(f"http://127.0.0.1:{edge.port}/healthz")
            assert reply.status_code == 503
            assert reply.headers["retry-after"] == "1"
            assert "in flight" in reply.json()["error"]["message"]
        finally:
            for stream, response in zip(streams, opened, strict=True):
                await response.aclose()
                await stream.__aexit__(None, None, None)
    assert fake is not None


async def test_connections_beyond_the_cap_get_503_and_close(edge_settings, config, wait_for, api_key):
    settings = edge_settings.model_copy(update={"max_connections": 3, "max_unauthenticated_per_ip": 100})
    server = GatewayServer(settings, create_app(settings, config=config))
    await server.start()
    try:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        reply = await _exchange(server.port, b"")
        assert _status(reply) == 503
        for _reader, writer in held:
            writer.close()
    finally:
        await server.stop_now()


async def test_replies_say_connection_close_from_the_first_moment_of_a_drain(edge, api_key):
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {api_key}"}) as http:
        url = f"http://127.0.0.1:{edge.port}/v1/models"
        before = await http.get(url)
        assert before.headers.get("connection") != "close"
        edge.gateway.begin_drain()
        edge.edge.begin_drain()
        during = await http.get(url)
        assert during.status_code == 200
        assert during.headers["connection"] == "close"
