"""One bounded schemathesis CLI run (a real process) against a gateway, failing with its output's tail."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

# The schemathesis hooks module: a check that no internal detail reaches a client.
HOOKS = Path(__file__).resolve().parent / "fuzz_hooks.py"


async def run_schemathesis(
    schema: str,
    key: str,
    cwd: Path,
    *,
    checks: str,
    max_examples: int,
    seed: int,
    phases: str = "examples,fuzzing",
    extra: tuple[str, ...] = (),
    timeout_s: float = 90,
) -> None:
    """`st run` on `schema` (a URL or a file; `extra` may add `--url` or a path filter) with the hooks."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("st")),
        "run",
        schema,
        *extra,
        "--checks",
        checks,
        "--max-examples",
        str(max_examples),
        "--phases",
        phases,
        "--seed",
        str(seed),
        "--request-timeout",
        "5",
        "--generation-database",
        "none",
        "-H",
        f"Authorization: Bearer {key}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env={
            **os.environ,
            "SCHEMATHESIS_TELEMETRY": "false",
            "NO_COLOR": "1",
            "SCHEMATHESIS_HOOKS": str(HOOKS),
        },
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode == 0, output.decode()[-6000:]
