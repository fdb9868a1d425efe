"""The gateways under test: the mock itself, ATP's full suite, LiteLLM's proxy and Portkey's gateway."""

from __future__ import annotations

import abc
import hashlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    BENCH_DIR,
    BenchError,
    chat_body,
    ensure_debian_tools,
    free_port,
    poll_http,
    process_tree,
)
from mock_upstream import MockUpstream

REPO = BENCH_DIR.parent
ENVS = BENCH_DIR / ".envs"
ATP_PYTHON = REPO / ".venv" / "bin" / "python"
# The peers, pinned: the figures are only comparable release to release. LiteLLM 1.108.0 is the newest
# 1.x whose `[proxy]` extra resolves on PyPI as of writing (later ones pin extras packages not published).
LITELLM_VERSION = "1.108.0"
PORTKEY_VERSION = "1.15.2"
UPSTREAM_KEY = "sk-bench-upstream"
START_TIMEOUT_S = 120.0


class Service:
    """A process started in its own session with its output in a log file, stopped by its id."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], logdir: Path, capture_stdout: bool = False
    ) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else self._log,
            stderr=self._log,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, limit: int = 1500) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace_s: float = 60.0) -> None:
        """SIGTERM (the services drain), then SIGKILL of the process group if it does not exit in time."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Workers a master left behind share its process group (start_new_session made pgid == pid).
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


class Target(abc.ABC):
    """One system under test. `endpoint(stream)` is the URL and headers a client uses."""

    name = "target"
    description = ""

    def __init__(self, mock: MockUpstream, workers: int, logdir: Path) -> None:
        self.mock = mock
        self.workers = workers
        self.logdir = logdir
        self.service: Service | None = None

    def install(self) -> None:
        """Make sure the software is present (may download it from its registry); nothing by default."""
        return

    @abc.abstractmethod
    def start(self) -> None:
        """Start the target's processes and wait until it answers."""

    @abc.abstractmethod
    def endpoint(self, stream: bool) -> tuple[str, dict[str, str]]:
        """The URL and headers a client posts chat requests to."""

    def pids(self) -> list[int]:
        """Root processes whose trees are charged for CPU and memory."""
        return [self.service.process.pid] if self.service and self.service.alive() else []

    def alive(self) -> bool:
        return self.service is not None and self.service.alive()

    def failure_detail(self) -> str:
        return self.service.log_tail() if self.service else ""

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def _wait_ready(self) -> None:
        url, headers = self.endpoint(False)
        assert self.service is not None
        try:
            poll_http(url, chat_body(False), headers, START_TIMEOUT_S, self.service.process)
        except BenchError as exc:
            raise BenchError(f"{self.name} did not start: {exc}\n{self.service.log_tail()}") from exc


class Direct(Target):
    """The mock upstream itself: the floor every gateway adds to."""

    name = "direct"

    def start(self) -> None:
        self.description = f"nginx mock, {self.mock.workers} worker"

    def endpoint(self, stream: bool) -> tuple[str, dict[str, str]]:
        return self.mock.chat_url(stream), {"Authorization": f"Bearer {UPSTREAM_KEY}"}

    def pids(self) -> list[int]:
        return self.mock.pids()

    def alive(self) -> bool:
        return bool(self.mock.pids())

    def stop(self) -> None:
        """The mock outlives the targets; the driver stops it."""


def atp_config_yaml(
    mock: MockUpstream, api_key_hash: str, tenant_limits: dict[str, float] | None = None
) -> str:
    """ATP's configuration for the bench: two OpenAI-type providers on the mock, a route for each."""
    provider = {
        "type": "openai",
        "api_key": "env:ATP_BENCH_UPSTREAM_KEY",
    }
    model = {
        "provider_model": "gpt-4o-mini",
        "input_usd_per_mtok": 0.15,
        "output_usd_per_mtok": 0.60,
        "context_window": 128000,
        "capabilities": ["streaming", "json", "tools"],
        "quality_prior": 0.7,
    }
    config = {
        "providers": {
            "mock_json": {**provider, "base_url": mock.base_url(False)},
            "mock_stream": {**provider, "base_url": mock.base_url(True)},
        },
        "models": {
            "mock-json": {**model, "provider": "mock_json"},
            "mock-stream": {**model, "provider": "mock_stream"},
        },
        # Requests name routes (not models), so every request goes through the policy kernel's decision.
        "routes": {
            "bench-json": {"candidates": ["mock-json"], "policy": "static"},
            "bench-stream": {"candidates": ["mock-stream"], "policy": "static"},
        },
        "default_route": "bench-json",
        "tenants": {
            "bench": {
                "api_keys": [{"hash": api_key_hash, "role": "operator", "name": "bench"}],
                **(tenant_limits or {}),
            }
        },
    }
    # JSON is YAML: no YAML library needed in the driver's interpreter.
    return json.dumps(config, indent=2)


class Atp(Target):
    """ATP's full path: `python -m atp_tools.suite` (observer, router, adapters, gateway)."""

    name = "atp"
    service_logs = False
    suite_module = "atp_tools.suite"

    def __init__(self, mock: MockUpstream, workers: int, logdir: Path) -> None:
        super().__init__(mock, workers, logdir)
        self.api_key = "atp-bench-" + secrets.token_urlsafe(18)
        self.gateway = ""
        self.ports: dict[str, int] = {}

    def install(self) -> None:
        if not ATP_PYTHON.exists():
            raise BenchError(f"{ATP_PYTHON} missing: run `make install` first")

    def settings(self) -> tuple[dict[str, float], dict[str, str], list[str]]:
        """The tenant's limits, extra environment and extra suite flags of this configuration."""
        return {}, {}, ["--no-metrics"]

    def configure(self, config: dict[str, object]) -> None:
        """Change the configuration's routes or models for a variant of the plain target; none here."""
        return

    def start(self) -> None:
        state = Path(tempfile.mkdtemp(prefix="atp-bench-state-", dir=self.logdir))
        config = state / "atp.yaml"
        digest = "sha256:" + hashlib.sha256(self.api_key.encode()).hexdigest()
        limits, extra_env, flags = self.settings()
        document = json.loads(atp_config_yaml(self.mock, digest, limits))
        self.configure(document)
        config.write_text(json.dumps(document, indent=2))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_")}
        env.update(
            ATP_CONFIG=str(config),
            ATP_BENCH_UPSTREAM_KEY=UPSTREAM_KEY,
            ATP_GATEWAY_WORKERS=str(self.workers),
            **extra_env,
        )
        cmd = [str(ATP_PYTHON), "-m", self.suite_module, "--ephemeral-ports", *flags]
        cmd += ["--state-dir", str(state)]
        if not self.service_logs:
            # Forwarding every service log line through the launcher would cost CPU the services need.
            cmd.append("--quiet")
        self.service = Service(f"{self.name}-suite", cmd, env, self.logdir, capture_stdout=True)
        ready = self._read_ready_line(START_TIMEOUT_S)
        self.ports = {k: int(v) for k, v in ready["ports"].items()}
        self.gateway = str(ready["gateway"])
        self.description = f"ATP suite, gateway workers={self.workers}, ports {self.ports}"
        self._wait_ready()

    def _read_ready_line(self, timeout_s: float) -> dict[str, object]:
        assert self.service is not None and self.service.process.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self.service.process.stdout

        def pump() -> None:
            # Owns the suite's stdout for its whole life so the pipe never fills and blocks the launcher.
            for line in stdout:
                lines.put(line)
            lines.put(b"")

        threading.Thread(target=pump, name="atp-suite-stdout", daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if not line:
                break
            if b"suite_ready" in line:
                return dict(json.loads(line))
        raise BenchError(f"ATP suite did not report suite_ready\n{self.service.log_tail()}")

    def endpoint(self, stream: bool) -> tuple[str, dict[str, str]]:
        return f"{self.gateway}/v1/chat/completions", {"Authorization": f"Bearer {self.api_key}"}

    def pids(self) -> list[int]:
        # The services, not the launcher: in production nothing sits between them and their logs.
        if not self.alive():
            return []
        assert self.service is not None
        root = self.service.process.pid
        return [pid for pid in process_tree([root]) if _ppid(pid) == root]


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except OSError:
        return -1


class LiteLLM(Target):
    """LiteLLM's proxy CLI with default settings, from its own venv under bench/.envs/litellm."""

    name = "litellm"
    venv = ENVS / "litellm"
    master_key = "sk-bench-" + secrets.token_hex(16)

    def install(self) -> None:
        marker = self.venv / ".bench-version"
        if marker.exists() and marker.read_text().strip() == LITELLM_VERSION:
            return
        print(f"bench: installing litellm[proxy]=={LITELLM_VERSION} into {self.venv}", flush=True)
        shutil.rmtree(self.venv, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=300)
            subprocess.run(
                [str(self.venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
                check=True,
                timeout=1800,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise BenchError(f"could not install litellm: {exc}") from exc
        marker.write_text(LITELLM_VERSION + "\n")

    def start(self) -> None:
        port = free_port()
        config = self.logdir / "litellm.yaml"
        models = [
            {
                "model_name": name,
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": self.mock.base_url(stream),
                    "api_key": UPSTREAM_KEY,
                },
            }
            for name, stream in (("bench-json", False), ("bench-stream", True))
        ]
        config.write_text(json.dumps({"model_list": models}, indent=2))
        env = dict(os.environ)
        # Its default start-up fetches a price list from the internet; this machine has none, so read the
        # copy bundled in the wheel (affects start-up only, not the request path).
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        # It refuses to start without a master key (as it should); clients authenticate with it, as with ATP.
        env["LITELLM_MASTER_KEY"] = self.master_key
        cmd = [str(self.venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--num_workers", str(self.workers)]
        self.service = Service("litellm", cmd, env, self.logdir)
        self._url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.description = f"litellm {LITELLM_VERSION} proxy CLI, --num_workers {self.workers}"
        self._wait_ready()

    def endpoint(self, stream: bool) -> tuple[str, dict[str, str]]:
        return self._url, {"Authorization": f"Bearer {self.master_key}"}


class Portkey(Target):
    """Portkey's open-source gateway (npm @portkey-ai/gateway) on Node; N workers through node:cluster."""

    name = "portkey"
    prefix = ENVS / "portkey"

    @property
    def entry(self) -> Path:
        return self.prefix / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"

    def install(self) -> None:
        if shutil.which("node") is None or shutil.which("npm") is None:
            ensure_debian_tools()
            print("bench: installing nodejs and npm with apt-get", flush=True)
            sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            try:
                subprocess.run(
                    [*sudo, "apt-get", "install", "-y", "-qq", "nodejs", "npm"], check=True, env=env
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise BenchError(f"could not install nodejs: {exc}") from exc
        package = self.entry.parent.parent / "package.json"
        if package.exists() and json.loads(package.read_text()).get("version") == PORTKEY_VERSION:
            return
        print(f"bench: installing @portkey-ai/gateway@{PORTKEY_VERSION} into {self.prefix}", flush=True)
        try:
            npm = ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(self.prefix)]
            subprocess.run(
                [*npm, f"@portkey-ai/gateway@{PORTKEY_VERSION}"],
                check=True,
                timeout=1800,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise BenchError(f"could not install @portkey-ai/gateway: {exc}") from exc

    def start(self) -> None:
        port = free_port()
        node = shutil.which("node") or "node"
        args = [f"--port={port}", "--headless"]
        # Without this shim every streamed request fails with HTTP 500 (see portkey_stream_fix.mjs).
        node_args = [node, "--import", (BENCH_DIR / "portkey_stream_fix.mjs").as_uri()]
        if self.workers > 1:
            cmd = [*node_args, str(BENCH_DIR / "portkey_cluster.mjs"), str(self.entry), *args]
        else:
            cmd = [*node_args, str(self.entry), *args]
        env = dict(os.environ, BENCH_WORKERS=str(self.workers))
        self.service = Service("portkey", cmd, env, self.logdir)
        self._port = port
        self.description = (
            f"@portkey-ai/gateway {PORTKEY_VERSION} on node {_node_version()}, {self.workers} process(es)"
        )
        self._wait_ready()

    def endpoint(self, stream: bool) -> tuple[str, dict[str, str]]:
        return f"http://127.0.0.1:{self._port}/v1/chat/completions", {
            "Authorization": f"Bearer {UPSTREAM_KEY}",
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": self.mock.base_url(stream),
        }


def _node_version() -> str:
    try:
        return subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


TARGETS: dict[str, type[Target]] = {
    "direct": Direct,
    "atp": Atp,
    "litellm": LiteLLM,
    "portkey": Portkey,
}
