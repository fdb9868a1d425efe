"""A service started on a port another process holds exits 1 saying so, instead of sharing the port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest


@pytest.fixture
def taken() -> Iterator[int]:
    """A port held by a listener bound with SO_REUSEPORT, as gRPC and the gateway's workers bind."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _start(module: str, env: dict[str, str]) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", module],
        env={**os.environ, "ATP_CONFIG": "", "ATP_LOG_JSON": "true", **env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    events = [orjson.loads(line) for line in done.stderr.splitlines() if line.startswith(b"{")]
    refusals = [e for e in events if e.get("event") == "cannot start"]
    assert refusals, done.stderr[-2000:]
    return done.returncode, refusals[0]


@pytest.mark.parametrize("service", ["observer", "router", "adapters"])
def test_a_grpc_service_on_a_taken_port_exits_1(taken, service, tmp_path):
    prefix = f"ATP_{service.upper()}_"
    code, refusal = _start(
        f"atp_{service}",
        {
            f"{prefix}PORT": str(taken),
            f"{prefix}METRICS_PORT": "0",
            "ATP_OBSERVER_SQLITE_PATH": str(tmp_path / "observer.sqlite3"),
            "ATP_ADAPTERS_SPOOL_DIR": str(tmp_path / "spool"),
        },
    )
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{taken}" in refusal["reason"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_gateway_on_a_taken_port_exits_1(taken, workers):
    code, refusal = _start(
        "atp_gateway",
        {"ATP_GATEWAY_PORT": str(taken), "ATP_GATEWAY_METRICS_PORT": "0", "ATP_GATEWAY_WORKERS": workers},
    )
    assert code == 1
    assert refusal["reason"] == f"cannot listen on 127.0.0.1:{taken}: Address already in use"
