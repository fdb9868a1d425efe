"""The health probe CLI against a real grpc.aio server running the library HealthServicer."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from atp_tools import probe


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[str, health.aio.HealthServicer]]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(None)


def _free_port() -> int:
    # Bound and released: nothing listens there while the probe dials it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _run(*args: str) -> tuple[int, str]:
    """Run the probe as the image does, `python -m atp_tools.probe`, in a real subprocess."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "atp_tools.probe",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_serving_server_exits_zero(health_server: tuple[str, health.aio.HealthServicer]) -> None:
    target, servicer = health_server
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    code, out = await _run(target)
    assert code == 0, out
    assert "SERVING" in out


async def test_not_serving_server_exits_one(health_server: tuple[str, health.aio.HealthServicer]) -> None:
    target, servicer = health_server
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    code, out = await _run(target, "--timeout", "5")
    assert code == 1
    assert "NOT_SERVING" in out


async def test_named_service_is_checked(health_server: tuple[str, health.aio.HealthServicer]) -> None:
    target, servicer = health_server
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("atp.router.v1.RouterService", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert (await _run(target, "--service", "atp.router.v1.RouterService"))[0] == 1
    code, out = await _run(target, "--service", "atp.unknown.v1.Nothing")
    assert code == 1
    assert "NOT_FOUND" in out


async def test_draining_flips_the_answer(health_server: tuple[str, health.aio.HealthServicer]) -> None:
    target, servicer = health_server
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert (await _run(target))[0] == 0
    await servicer.enter_graceful_shutdown()
    assert (await _run(target))[0] == 1


async def test_unreachable_server_exits_one_within_timeout() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    code, out = await _run(f"127.0.0.1:{_free_port()}", "--timeout", "1")
    assert code == 1
    assert "UNAVAILABLE" in out or "DEADLINE_EXCEEDED" in out
    # Interpreter start-up plus the 1 s deadline; a hang would blow far past this.
    assert loop.time() - started < 10


def test_check_in_process_reports_unreachable() -> None:
    serving, detail = probe.check(f"127.0.0.1:{_free_port()}", timeout_s=0.5)
    assert not serving
    assert detail.split(":")[0] in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def test_bad_timeout_is_a_usage_error() -> None:
    assert probe.main(["127.0.0.1:1", "--timeout", "0"]) == 2
