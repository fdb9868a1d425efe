"""Shared pieces of the benchmark: system tools, /proc accounting, wrk runs and an SSE checking client."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WRK_DIR = BENCH_DIR / "wrk"
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """A target or tool that could not be installed, started or measured."""


def which(name: str) -> str:
    path = shutil.which(name, path=_SBIN_PATH)
    if path is None:
        raise BenchError(f"{name} not found")
    return path


_tools_checked = False


def ensure_debian_tools() -> None:
    """Install nginx and wrk from Debian when missing (fresh machines and CI do not have them)."""
    global _tools_checked
    if _tools_checked:
        return
    missing = [name for name in ("nginx", "wrk") if shutil.which(name, path=_SBIN_PATH) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print(f"bench: installing {' '.join(missing)} with apt-get", flush=True)
        try:
            subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env, timeout=600)
            subprocess.run(
                [*sudo, "apt-get", "install", "-y", "-qq", "nginx", "wrk"], check=True, env=env, timeout=900
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise BenchError(f"could not install nginx and wrk with apt-get: {exc}") from exc
    _tools_checked = True


def free_port() -> int:
    """A port that is free now (the small race with other binders is acceptable on a bench machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(
    url: str, body: bytes, headers: dict[str, str], timeout_s: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """One POST with a fresh connection; returns status, lower-cased headers and the whole body."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        conn.request(
            "POST", parts.path or "/", body=body, headers={"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        payload = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload
    finally:
        conn.close()


def poll_http(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    ok: tuple[int, ...] = (200,),
) -> None:
    """Wait until a POST to `url` answers with a status in `ok`, the process exits, or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BenchError(f"exited with code {process.returncode} before answering")
        try:
            status, _, payload = post(url, body, headers, timeout_s=5.0)
            if status in ok:
                return
            last = f"HTTP {status}: {payload[:300]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise BenchError(f"not ready after {timeout_s:.0f} s ({last})")


# ---------------------------------------------------------------- /proc accounting of process trees


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        ppid = int(stat[stat.rindex(b")") + 2 :].split(b" ", 2)[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants that are alive now."""
    children = _children_map()
    seen: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen or not os.path.exists(f"/proc/{pid}"):
            continue
        seen.append(pid)
        stack.extend(children.get(pid, ()))
    return seen


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes (threads included)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class RssSampler:
    """A thread that samples the summed RSS of each registered process tree, keeping the peak."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peaks: dict[str, int] = {}
        self._roots: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def watch(self, name: str, roots: list[int]) -> None:
        with self._lock:
            self._roots[name] = roots

    def unwatch(self, name: str) -> None:
        with self._lock:
            self._roots.pop(name, None)

    def sample(self) -> None:
        with self._lock:
            roots = dict(self._roots)
        for name, pids in roots.items():
            total = sum(rss_bytes(pid) for pid in process_tree(pids))
            if total > self.peaks.get(name, 0):
                self.peaks[name] = total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# ---------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    """What one wrk run measured (latencies in milliseconds)."""

    requests: int = 0
    duration_s: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    max_ms: float = 0.0
    non_2xx: int = 0
    socket_errors: int = 0
    cpu_s: float = 0.0
    raw: dict[str, object] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def run_wrk(
    url: str,
    *,
    stream: bool,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
    threads: int = 1,
    timeout_s: float = 10.0,
    body: bytes = b"",
) -> WrkResult:
    """One wrk run with bench/wrk/chat[_stream].lua; its done() hook prints a JSON line we parse. `body`
    replaces the scripts' chat body (another dialect's request)."""
    script = WRK_DIR / ("chat_stream.lua" if stream else "chat.lua")
    env = dict(os.environ)
    env["BENCH_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in headers.items())
    env["BENCH_BODY"] = body.decode()
    cmd = [
        which("wrk"),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=duration_s + timeout_s + 30, check=False)
    out = proc.stdout.decode(errors="replace")
    line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise BenchError(f"wrk failed ({proc.returncode}): {out[-500:]} {proc.stderr.decode()[-500:]}")
    data = json.loads(line.removeprefix("BENCH_RESULT "))
    errors = data["errors"]
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1e3,
        p90_ms=data["p90_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        mean_ms=data["mean_us"] / 1e3,
        max_ms=data["max_us"] / 1e3,
        non_2xx=int(errors["status"]),
        socket_errors=int(errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]),
        raw=data,
    )


# ---------------------------------------------------------------- request bodies and stream checks


def chat_body(stream: bool) -> bytes:
    """The body the Lua scripts post, for Python-side checks (kept equal to bench/wrk/*.lua)."""
    model = "bench-stream" if stream else "bench-json"
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class StreamCheck:
    """One streamed reply as a client saw it."""

    status: int
    content_events: int
    text: str
    done: bool
    finish_reason: str | None


def read_stream(url: str, headers: dict[str, str], timeout_s: float = 10.0) -> StreamCheck:
    """POST a streamed request and parse every SSE event of the reply."""
    status, _, payload = post(url, chat_body(True), headers, timeout_s)
    if status != 200:
        return StreamCheck(status, 0, payload[:200].decode(errors="replace"), False, None)
    text: list[str] = []
    events = 0
    done = False
    finish = None
    for block in payload.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(
            line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")
        ).strip()
        if not data:
            continue
        if data == b"[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += 1
                text.append(delta["content"])
            finish = choice.get("finish_reason") or finish
    return StreamCheck(status, events, "".join(text), done, finish)


def read_completion(url: str, headers: dict[str, str], timeout_s: float = 10.0) -> tuple[int, str]:
    """POST a non-streamed request; returns the status and the reply's text (or the error body)."""
    status, _, payload = post(url, chat_body(False), headers, timeout_s)
    if status != 200:
        return status, payload[:300].decode(errors="replace")
    message = json.loads(payload)["choices"][0]["message"]
    return status, message.get("content") or ""
