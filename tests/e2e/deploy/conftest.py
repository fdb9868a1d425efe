"""Fixtures for the deployment tests: Helm through helm-sdkpy, and the rendered chart."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "atp"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"

# CI installs deploy/requirements-deploy.txt (make deploy-tools), so there a missing tool is a failure.
REQUIRE_TOOLS = any(
    os.environ.get(name, "") not in ("", "0", "false") for name in ("CI", "ATP_REQUIRE_DEPLOY_TOOLS")
)


def _missing_tool(what: str) -> None:
    reason = f"{what} is not installed: run `make deploy-tools` (installs deploy/requirements-deploy.txt)"
    if REQUIRE_TOOLS:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def require_tool():  # type: ignore[no-untyped-def]
    """Call with (name, present): skips loudly when a check tool is missing, fails under CI."""

    def check(what: str, present: bool) -> None:
        if not present:
            _missing_tool(what)

    return check


@pytest.fixture(scope="session")
def helmcheck() -> ModuleType:
    """deploy/helmcheck.py (a script, not a package), once helm-sdkpy is known to be installed."""
    if importlib.util.find_spec("helm_sdkpy") is None:
        _missing_tool("helm-sdkpy")
    spec = importlib.util.spec_from_file_location("atp_deploy_helmcheck", ROOT / "deploy" / "helmcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Rendered:
    """A rendered release: its objects, notes and the values it was rendered with."""

    def __init__(self, objects: list[dict[str, Any]], notes: str, values: dict[str, Any]) -> None:
        self.objects = objects
        self.notes = notes
        self.values = values

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def component(self, kind: str, component: str) -> dict[str, Any]:
        (found,) = [
            o
            for o in self.of_kind(kind)
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        return found


def _render(helmcheck: ModuleType, *values_files: Path) -> Rendered:
    manifest, notes = asyncio.run(helmcheck.render(CHART, values_files))
    defaults = helmcheck.load_values([CHART / "values.yaml"])
    values = helmcheck.merge_values(defaults, helmcheck.load_values(values_files))
    return Rendered(helmcheck.documents(manifest), notes, values)


@pytest.fixture(scope="session", params=["default", "all-options"])
def rendered(request: pytest.FixtureRequest, helmcheck: ModuleType) -> Rendered:
    """The chart rendered by Helm, with the default values and with every option on."""
    files = [] if request.param == "default" else [ALL_OPTIONS]
    return _render(helmcheck, *files)


@pytest.fixture(scope="session")
def render_with(helmcheck: ModuleType):  # type: ignore[no-untyped-def]
    """Render with extra values files."""
    return lambda *files: _render(helmcheck, *files)
