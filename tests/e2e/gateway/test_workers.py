"""ATP_GATEWAY_WORKERS=2 as a real process: one port shared by two workers, merged metrics, drain of all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import httpx
import orjson
import pytest

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
DRIP = {"model": "drip", "messages": [{"role": "user", "content": "x"}], "stream": True}


def _sockets(pid: int) -> int:
    """Open sockets of a process (its listener, channels and client connections)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
async def supervisor(adapters, observer, api_key):
    env = {
        **os.environ,
        "ATP_CONFIG": "",
        "ATP_API_KEY": api_key,
        "ATP_LOG_JSON": "true",
        "ATP_GATEWAY_WORKERS": "2",
        "ATP_GATEWAY_PORT": "0",
        "ATP_GATEWAY_METRICS_PORT": "0",
        "ATP_GATEWAY_ADAPTERS_ADDR": adapters[0].address,
        "ATP_GATEWAY_OBSERVER_ADDR": observer[0].address,
        "ATP_GATEWAY_DRAIN_DELAY_S": "1.0",
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
    lines: list[dict] = []
    ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            line = orjson.loads(raw)
            lines.append(line)
            if line.get("event") == "ready" and not ready.done():
                ready.set_result(line)
        if not ready.done():
            ready.set_exception(RuntimeError(f"gateway exited before ready: {lines[-5:]}"))

    reader = asyncio.create_task(read())
    try:
        yield process, await asyncio.wait_for(ready, 30), lines
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reader


async def _ready(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 10
    while (await http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "gateway never became ready"
        await asyncio.sleep(0.02)


async def test_two_workers_share_the_port_and_merge_metrics(supervisor, api_key):
    process, ready, _lines = supervisor
    pids = ready["worker_pids"]
    assert ready["workers"] == 2 and len(set(pids)) == 2 and process.pid not in pids
    base = f"http://127.0.0.1:{ready['port']}"
    auth = {"authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        await _ready(http)
    before = {pid: _sockets(pid) for pid in pids}
    # 16 connections held open at once: the kernel spreads them over both workers (all 16 on one worker
    # has a chance of 2**-15).
    clients = [httpx.AsyncClient(base_url=base, timeout=10, headers=auth) for _ in range(16)]
    try:
        replies = await asyncio.gather(
            *(
                c.post(CHAT, json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
                for c in clients
            )
        )
        assert [r.status_code for r in replies] == [200] * 16
        assert all(float(r.headers["x-atp-overhead-ms"]) >= 0 for r in replies)
        after = {pid: _sockets(pid) for pid in pids}
        assert all(after[pid] > before[pid] for pid in pids), (before, after)
    finally:
        for client in clients:
            await client.aclose()
    # The supervisor's metrics port shows the sum over the workers.
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{ready['metrics_port']}/metrics")).text
    served = [
        line
        for line in text.splitlines()
        if line.startswith("atp_gateway_requests_total{")
        and 'endpoint="chat_completions"' in line
        and 'status="200"' in line
    ]
    assert len(served) == 1 and float(served[0].rsplit(" ", 1)[1]) == 16.0, served
    assert "atp_gateway_in_flight" in text


async def test_sigterm_drains_every_worker_then_exits_0(supervisor, api_key):
    process, ready, lines = supervisor
    pids = ready["worker_pids"]
    base = f"http://127.0.0.1:{ready['port']}"
    auth = {"authorization": f"Bearer {api_key}"}
    clients = [httpx.AsyncClient(base_url=base, timeout=10, headers=auth) for _ in range(8)]
    try:
        await _ready(clients[0])
        streams = [await c.send(c.build_request("POST", CHAT, json=DRIP), stream=True) for c in clients]
        iterators = [s.aiter_lines() for s in streams]
        for lines_of in iterators:
            assert (await anext(lines_of)).startswith("data: ")

        process.send_signal(signal.SIGTERM)
        # Readiness fails at once on whichever worker a new connection reaches.
        async with httpx.AsyncClient(base_url=base, timeout=5) as fresh:
            statuses = {
                (await fresh.get("/readyz", headers={"connection": "close"})).status_code for _ in range(4)
            }
        assert statuses == {503}

        # Every in-flight stream finishes with all its events.
        for lines_of in iterators:
            rest = [line async for line in lines_of if line]
            assert rest[-1] == "data: [DONE]"
            text = "".join(orjson.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in rest[:-1])
            assert text.count("tick ") >= 11
        for stream in streams:
            await stream.aclose()
    finally:
        for client in clients:
            await client.aclose()
    assert await asyncio.wait_for(process.wait(), 20) == 0
    assert not any(_alive(pid) for pid in pids)
    events = [line.get("event") for line in lines]
    # Two workers and the supervisor each say they drained and stopped.
    assert events.count("draining") == 3 and events.count("stopped") == 3
    assert not any(line.get("level") == "error" for line in lines), lines


async def test_a_killed_worker_is_replaced(supervisor, api_key, wait_for):
    process, ready, lines = supervisor
    victim, survivor = ready["worker_pids"]
    os.kill(victim, signal.SIGKILL)
    await wait_for(
        lambda: sum(line.get("event") == "worker ready" for line in lines) == 3, 20, "a new worker ready"
    )
    replacement = [line["pid"] for line in lines if line.get("event") == "worker ready"][-1]
    assert replacement not in (victim, survivor) and _alive(survivor)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ready['port']}", timeout=10) as http:
        await _ready(http)
    assert process.returncode is None
