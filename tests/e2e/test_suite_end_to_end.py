"""The whole suite as four real processes, started exactly as `make run` starts it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.slow
GRPCURL = str(Path(sys.executable).parent / "grpcurl")
API_KEY = "atp-e2e-" + "k" * 24


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    state = tmp_path_factory.mktemp("suite")
    env = {**os.environ, "ATP_API_KEY": API_KEY, "ATP_LOG_JSON": "true"}
    env.pop("ATP_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "atp_tools.suite", "--ephemeral-ports", "--quiet", "--state-dir", str(state)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    ready: dict = {}

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            if raw.startswith(b"{"):
                event = orjson.loads(raw)
                if event.get("event") == "suite_ready":
                    ready.update(event)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for _ in range(600):
        if ready or process.poll() is not None:
            break
        threading.Event().wait(0.1)
    assert ready, f"suite did not start (exit {process.poll()})"
    yield {"process": process, "state": state, **ready}
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def _grpcurl(*args: str) -> str:
    result = subprocess.run(
        [GRPCURL, "-plaintext", "-max-time", "10", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_openai_sdk_chat_and_stream_agree(suite):
    client = openai.OpenAI(base_url=suite["gateway"] + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "the quick brown fox jumps"}]
    )
    text = completion.choices[0].message.content
    assert text and "the quick brown fox jumps" in text
    assert completion.model in ("local-small", "local-large")

    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "the quick brown fox jumps"}], stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == text

    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "feedback please"}]
    )
    decision_id = raw.headers["x-atp-decision-id"]
    assert raw.headers["x-atp-model"] == raw.parse().model
    feedback = httpx.post(
        suite["gateway"] + "/v1/feedback",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"decision_id": decision_id, "score": 0.9, "label": "good"},
        timeout=10,
    )
    assert feedback.status_code == 200, feedback.text


def test_wrong_key_is_refused_in_openai_format(suite):
    response = httpx.post(
        suite["gateway"] + "/v1/chat/completions",
        headers={"Authorization": "Bearer wrong"},
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 401
    # OpenAI answers a wrong key this way: invalid_request_error with code invalid_api_key.
    assert response.json()["error"]["code"] == "invalid_api_key", response.json()


@pytest.mark.parametrize(
    ("service", "full_name", "method"),
    [
        ("router", "atp.router.v1.RouterService", "Route"),
        ("observer", "atp.observer.v1.ObserverService", "Ingest"),
        ("adapters", "atp.adapters.v1.AdaptersService", "Generate"),
    ],
)
def test_grpcurl_lists_describes_and_checks_health(suite, service, full_name, method):
    address = f"127.0.0.1:{suite['ports'][service]}"
    services = _grpcurl(address, "list").split()
    assert full_name in services and "grpc.health.v1.Health" in services
    assert f"rpc {method}" in _grpcurl(address, "describe", full_name)
    health = orjson.loads(_grpcurl("-d", '{"service": ""}', address, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"


def test_grpcurl_calls_route_and_generate(suite):
    router = f"127.0.0.1:{suite['ports']['router']}"
    body = '{"tenant": "local", "model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
    decision = orjson.loads(_grpcurl("-d", body, router, "atp.router.v1.RouterService/Route"))["decision"]
    assert decision["candidates"][0]["model"] in ("local-small", "local-large")
    assert decision["decision_id"], decision

    adapters = f"127.0.0.1:{suite['ports']['adapters']}"
    out = _grpcurl("-d", body, adapters, "atp.adapters.v1.AdaptersService/Generate")
    assert "echo" in out and "completion" in out


def test_suite_drains_on_sigint_and_stores_observations(suite):
    process = suite["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    with sqlite3.connect(suite["state"] / "observer.sqlite3") as db:
        stored = db.execute("SELECT count(*) FROM observations").fetchone()[0]
        joined = db.execute(
            "SELECT count(*) FROM feedback f JOIN observations o ON o.decision_id = f.decision_id"
        ).fetchone()[0]
    # Three chat requests went through the gateway before, plus one Generate by grpcurl.
    assert stored >= 4
    assert joined == 1
