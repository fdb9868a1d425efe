"""Where tests live: every test file in one of the three tiers, and fakes built from the contract alone."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.source_parse import parse_source

ROOT = Path(__file__).resolve().parents[2]
TIERS = ("unit", "integration", "e2e")
SERVICE_PACKAGES = ("atp_gateway", "atp_adapters", "atp_router", "atp_observer")


def _tracked_python(under: Path) -> list[Path]:
    return [p for p in under.rglob("*.py") if ".venv" not in p.parts and "__pycache__" not in p.parts]


def test_every_test_file_is_in_a_tier() -> None:
    """A test_*.py under libs/, services/ or tests/ outside tests/{unit,integration,e2e} is never run."""
    strays = [
        str(path.relative_to(ROOT))
        for base in ("libs", "services", "tests")
        for path in _tracked_python(ROOT / base)
        if path.name.startswith("test_")
        and path.relative_to(ROOT).parts[:2] not in {("tests", tier) for tier in TIERS}
    ]
    assert strays == [], f"move these into tests/unit, tests/integration or tests/e2e: {strays}"


def test_fakes_import_no_service_code() -> None:
    """Fakes stand in for a service: built from its protos, never from the service's own modules."""
    offenders = []
    for path in _tracked_python(ROOT / "tests" / "fakes"):
        for node in ast.walk(parse_source(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in SERVICE_PACKAGES]
    assert offenders == []
