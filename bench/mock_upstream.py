"""The mock OpenAI upstream: nginx serving a fixed chat.completion and a fixed SSE stream from a temp dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ensure_debian_tools, free_port, poll_http, which

MODEL = "gpt-4o-mini"
# Two base URLs on one server: gateways pick the stream body or the JSON body by provider base URL, so no
# request-body inspection (njs/lua) is needed in nginx.
JSON_PREFIX = "/json/v1"
STREAM_PREFIX = "/sse/v1"
CHAT_PATH = "/chat/completions"

# The streamed reply: a role chunk, 18 content chunks, a finish chunk carrying usage, then [DONE].
STREAM_WORDS = [f"w{i:02d} " for i in range(18)]
EXPECTED_TEXT = "".join(STREAM_WORDS)
STREAM_EVENTS = len(STREAM_WORDS) + 2
USAGE = {"prompt_tokens": 12, "completion_tokens": len(STREAM_WORDS), "total_tokens": 12 + len(STREAM_WORDS)}


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def completion_body() -> str:
    """The fixed non-streamed chat.completion."""
    return _compact(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": EXPECTED_TEXT},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def stream_body() -> str:
    """The fixed SSE stream: STREAM_EVENTS chunk events then `data: [DONE]`."""

    def chunk(delta: dict[str, object], finish: str | None = None, usage: object = None) -> str:
        payload: dict[str, object] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            payload["usage"] = usage
        return f"data: {_compact(payload)}\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word}) for word in STREAM_WORDS]
    events.append(chunk({}, "stop", USAGE))
    events.append("data: [DONE]\n\n")
    return "".join(events)


def _nginx_string(text: str) -> str:
    # nginx unescapes \" \' \\ \n inside quoted strings; the bodies hold no `$`, so no variable expansion.
    assert "$" not in text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def nginx_config(workdir: Path, port: int, workers: int) -> str:
    """A self-contained nginx.conf: every path under `workdir`, foreground, access log off."""
    tmp = workdir / "tmp"
    return f"""daemon off;
master_process on;
worker_processes {workers};
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # Gateways keep pooled connections: never make them reconnect mid-run.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_max_body_size 1m;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location = {JSON_PREFIX}{CHAT_PATH} {{
            default_type application/json;
            return 200 {_nginx_string(completion_body())};
        }}
        location = {STREAM_PREFIX}{CHAT_PATH} {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            return 200 {_nginx_string(stream_body())};
        }}
        location / {{
            default_type application/json;
            return 404 '{{"error":{{"message":"unknown path","type":"invalid_request_error"}}}}';
        }}
    }}
}}
"""


class MockUpstream:
    """nginx in the foreground from a temp dir; `base_url(stream)` is what a provider config points at."""

    def __init__(self, workers: int = 1, port: int = 0) -> None:
        self.workers = workers
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="atp-bench-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None

    def base_url(self, stream: bool) -> str:
        return f"http://127.0.0.1:{self.port}{STREAM_PREFIX if stream else JSON_PREFIX}"

    def chat_url(self, stream: bool) -> str:
        return self.base_url(stream) + CHAT_PATH

    def start(self, timeout_s: float = 15.0) -> None:
        ensure_debian_tools()
        (self._dir / "tmp").mkdir(exist_ok=True)
        conf = self._dir / "nginx.conf"
        conf.write_text(nginx_config(self._dir, self.port, self.workers))
        nginx = which("nginx")
        # -e: the error log before the config is read, so nginx never touches /var/log.
        cmd = [nginx, "-p", str(self._dir), "-c", str(conf), "-e", str(self._dir / "error.log")]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        poll_http(self.chat_url(False), b"{}", {}, timeout_s, self.process)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process and self.process.poll() is None else []

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGQUIT is nginx's graceful shutdown; its workers exit with the master.
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> MockUpstream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Serve the mock in the foreground (for poking at it with curl); Ctrl-C stops it."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    # SIGTERM takes the same path as Ctrl-C, so nginx is always stopped with us.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with MockUpstream(port=port) as mock:
        print(f"mock upstream: non-stream {mock.chat_url(False)}  stream {mock.chat_url(True)}", flush=True)
        try:
            while mock.process and mock.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
