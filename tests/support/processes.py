"""Start ATP services as real processes, exactly as `make run` does, and wait for their ready lines."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    """A running service: its process, bound port and captured log lines."""

    name: str
    process: subprocess.Popen[bytes]
    port: int = 0
    lines: list[dict] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread = field(default_factory=threading.Thread)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def events(self, name: str) -> list[dict]:
        return [line for line in self.lines if line.get("event") == name]


def _read(service: ServiceProcess) -> None:
    assert service.process.stderr is not None
    for raw in service.process.stderr:
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            line = {"event": "raw", "text": raw.decode(errors="replace")}
        if not isinstance(line, dict):
            continue
        service.lines.append(line)
        if line.get("event") == "ready" and not service._ready.is_set():
            service.port = int(line["port"])
            service._ready.set()
    service.process.stderr.close()


def start_service(name: str, env: dict[str, str], timeout: float = 30.0) -> ServiceProcess:
    """`python -m atp_<name>` with `env` added to ours; returns once it logged its ready line."""
    full_env = {**os.environ, "ATP_LOG_JSON": "true", **env}
    full_env.setdefault(f"ATP_{name.upper()}_PORT", "0")
    # Free ports for metrics too, so tests never collide with a suite running on the defaults.
    full_env.setdefault(f"ATP_{name.upper()}_METRICS_PORT", "0")
    process = subprocess.Popen(
        [sys.executable, "-m", f"atp_{name}"],
        env=full_env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    service = ServiceProcess(name, process)
    service._reader = threading.Thread(target=_read, args=(service,), daemon=True)
    service._reader.start()
    deadline = time.monotonic() + timeout
    while not service._ready.wait(0.05):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = "\n".join(str(line) for line in service.lines[-20:])
            raise RuntimeError(f"{name} did not become ready (exit {process.poll()}):\n{tail}")
    return service


@contextlib.contextmanager
def running_services(names: list[str], env: dict[str, str]) -> Iterator[dict[str, ServiceProcess]]:
    """Start `names` in order, wiring each to the ones before it; SIGTERM them in reverse order after."""
    started: dict[str, ServiceProcess] = {}
    try:
        for name in names:
            wiring = {
                f"ATP_{name.upper()}_{peer.upper()}_ADDR": service.address
                for peer, service in started.items()
            }
            started[name] = start_service(name, {**env, **wiring})
        yield started
    finally:
        for service in reversed(list(started.values())):
            with contextlib.suppress(Exception):
                service.terminate()
