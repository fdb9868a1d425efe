"""Schemathesis (its CLI, a real process) against a gateway on a real socket over the fake adapters:
generated requests on every documented operation find no server error and no schema violation."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

# The schemathesis hooks module: a check that no internal detail reaches a client.
HOOKS = Path(__file__).resolve().parents[2] / "support" / "fuzz_hooks.py"


async def test_schemathesis_finds_no_server_errors_or_schema_violations(live, api_key, tmp_path: Path):
    """A bounded schemathesis run (CLI, against the real socket) over every documented operation."""
    st = Path(sys.executable).with_name("st")
    process = await asyncio.create_subprocess_exec(
        str(st),
        "run",
        f"http://127.0.0.1:{live.port}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
        "no_internal_detail",
        "--max-examples",
        "40",
        "--phases",
        "examples,fuzzing",
        "--seed",
        "1",
        "--request-timeout",
        "5",
        "--generation-database",
        "none",
        "-H",
        f"Authorization: Bearer {api_key}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_TELEMETRY": "false",
            "NO_COLOR": "1",
            "SCHEMATHESIS_HOOKS": str(HOOKS),
        },
    )
    output, _ = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, output.decode()[-6000:]


async def test_schemathesis_on_embeddings_and_models(live, api_key, tmp_path: Path) -> None:
    """Positive and negative generated requests (schemathesis CLI, real socket) on embeddings and models;
    chat completions has its own run above (the chat schema is too large for the coverage phase
    within the test's time)."""
    st_cli = Path(sys.executable).with_name("st")
    process = await asyncio.create_subprocess_exec(
        str(st_cli),
        "run",
        f"http://127.0.0.1:{live.port}/openapi.json",
        "--include-path-regex",
        "^/v1/(embeddings|models.*)$",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        "60",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "3",
        "--request-timeout",
        "5",
        "--generation-database",
        "none",
        "-H",
        f"Authorization: Bearer {api_key}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, output.decode()[-6000:]


async def test_schemathesis_on_responses_and_messages(live, api_key, tmp_path: Path) -> None:
    """Positive and negative generated requests (schemathesis CLI, real socket) on both endpoints."""
    st_cli = Path(sys.executable).with_name("st")
    process = await asyncio.create_subprocess_exec(
        str(st_cli),
        "run",
        f"http://127.0.0.1:{live.port}/openapi.json",
        "--include-path-regex",
        "^/v1/(responses|messages)$",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        "60",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "2",
        "--request-timeout",
        "5",
        "--generation-database",
        "none",
        "-H",
        f"Authorization: Bearer {api_key}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode()[-6000:]
