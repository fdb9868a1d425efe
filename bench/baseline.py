"""ATP at an earlier git revision, measured beside the current tree in the same run (`--baseline-rev`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from harness import BenchError
from targets import REPO, Atp

# The packages' source roots inside a checkout, in the order the editable install puts them.
PACKAGE_ROOTS = (
    "libs/common",
    "services/gateway",
    "services/router",
    "services/observer",
    "services/adapters",
    "tools",
)


class AtpBaseline(Atp):
    """The plain target run from the source of `ATP_BENCH_BASELINE_REV` (exported with `git archive`) on
    the same virtualenv: the same bench, configuration and machine moment, so a change's cost is a ratio."""

    name = "atp-baseline"

    def install(self) -> None:
        super().install()
        rev = os.environ.get("ATP_BENCH_BASELINE_REV", "")
        if not rev:
            raise BenchError("atp-baseline needs --baseline-rev (or ATP_BENCH_BASELINE_REV)")
        try:
            commit = subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            raise BenchError(f"atp-baseline: {rev!r} is not a commit of this repository") from exc
        self.tree = REPO / "bench" / "out" / f"baseline-{commit[:12]}"
        if not (self.tree / "libs").is_dir():
            self.tree.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True, timeout=120
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(self.tree)], input=archive, check=True, timeout=120)
        self.commit = commit
        if not (self.tree / "tools" / "atp_tools").is_dir():
            self.suite_module = "atp_common.suite"  # where the launcher lived before the tools package

    def settings(self) -> tuple[dict[str, float], dict[str, str], list[str]]:
        limits, env, flags = super().settings()
        # Source roots ahead of the editable install's finder: every service process imports the old tree.
        path = os.pathsep.join(str(self.tree / root) for root in PACKAGE_ROOTS)
        return limits, {**env, "PYTHONPATH": path}, flags

    def configure(self, config: dict[str, Any]) -> None:
        super().configure(config)
        if '"operator"' in (self.tree / "libs/common/atp_common/config.py").read_text():
            return
        # Before the operator role the same key was an `admin` (the older name the config still accepts).
        for tenant in config["tenants"].values():
            for key in tenant.get("api_keys", ()):
                if key.get("role") == "operator":
                    key["role"] = "admin"

    def start(self) -> None:
        super().start()
        self.description += f"; source of {self.commit[:12]} ({Path(self.tree).name})"
