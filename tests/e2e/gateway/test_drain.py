"""`python -m atp_gateway` as a real process: ready line, metrics, and the drain sequence on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.slow


class _Process:
    """The gateway process; its stderr JSON log lines are collected so the pipe never fills."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.lines: list[dict] = []
        self.ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                line = {"event": raw.decode(errors="replace")}
            self.lines.append(line)
            if line.get("event") == "ready" and not self.ready.done():
                self.ready.set_result(line)
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"gateway exited before ready: {self.lines[-5:]}"))

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader


@pytest.fixture
async def gateway_process(adapters, observer, api_key):
    env = {
        **os.environ,
        "ATP_CONFIG": "",
        "ATP_API_KEY": api_key,
        "ATP_LOG_JSON": "true",
        "ATP_GATEWAY_PORT": "0",
        "ATP_GATEWAY_METRICS_PORT": "0",
        "ATP_GATEWAY_ADAPTERS_ADDR": adapters[0].address,
        "ATP_GATEWAY_OBSERVER_ADDR": observer[0].address,
        "ATP_GATEWAY_DRAIN_DELAY_S": "0.2",
        "ATP_GATEWAY_GRACE_S": "10",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "atp_gateway",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    running = _Process(process)
    try:
        yield running
    finally:
        await running.close()


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def test_sigterm_drains_streams_and_websockets_then_exits_0(gateway_process, api_key, wait_for):
    ready = await asyncio.wait_for(gateway_process.ready, 15)
    port = ready["port"]
    assert port > 0 and ready["metrics_port"] > 0
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        deadline = time.monotonic() + 10
        while (await http.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "gateway never became ready"
            await asyncio.sleep(0.02)
        metrics = await http.get(f"http://127.0.0.1:{ready['metrics_port']}/metrics")
        assert "atp_gateway_in_flight" in metrics.text

        # In flight when SIGTERM arrives: an SSE stream and a WebSocket request (each ~0.6 s long).
        body = {"model": "drip", "messages": [{"role": "user", "content": "x"}]}
        stream = await http.send(
            http.build_request("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=auth),
            stream=True,
        )
        lines = stream.aiter_lines()
        first = [await anext(lines)]
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/v1/ws", additional_headers=auth)
        await ws.send(orjson.dumps({"type": "request", "id": "w", "body": body}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "delta"

        gateway_process.process.send_signal(signal.SIGTERM)
        # Readiness fails at once (well inside the 0.2 s delay, while the listener still accepts).
        signalled = time.monotonic()
        async with httpx.AsyncClient(base_url=base, timeout=5) as fresh:
            readyz = await fresh.get("/readyz")
            while readyz.status_code == 200 and time.monotonic() - signalled < 0.1:
                readyz = await fresh.get("/readyz")
        assert readyz.status_code == 503 and readyz.json() == {"status": "draining"}

        # The stream finishes completely.
        rest = [line async for line in lines]
        events = [line for line in first + rest if line]
        assert events[-1] == "data: [DONE]"
        text = "".join(
            orjson.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1] if e[6:]
        )
        assert text == "tick " * 12
        await stream.aclose()

        # The WebSocket gets the rest of its reply, then close 1001.
        frames = []
        with pytest.raises(ConnectionClosed):
            while True:
                frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 5)))
        assert frames[-1]["type"] == "done" and frames[-1]["id"] == "w"
        assert frames[-1]["response"]["choices"][0]["message"]["content"] == "tick " * 12
        assert ws.close_code == 1001
        assert ws.close_reason == "draining: reconnect, retry after 1s"

        # New connections are refused once the delay is over, and the process exits 0.
        await wait_for(lambda: _refused(port), what="listener closed")
        assert await asyncio.wait_for(gateway_process.process.wait(), 15) == 0
    events = [line.get("event") for line in gateway_process.lines]
    assert "draining" in events and "stopped" in events
    assert not any(line.get("level") == "error" for line in gateway_process.lines), gateway_process.lines
