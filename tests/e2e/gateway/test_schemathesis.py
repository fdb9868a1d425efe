"""Schemathesis (its CLI, a real process) against a gateway on a real socket over the fake adapters:
generated requests on every documented operation find no server error and no schema violation."""

from __future__ import annotations

from pathlib import Path

from tests.support.schemathesis_cli import run_schemathesis

CONFORMANCE = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
)


async def test_schemathesis_finds_no_server_errors_or_schema_violations(live, api_key, tmp_path: Path):
    """A bounded run over every documented operation."""
    schema = f"http://127.0.0.1:{live.port}/openapi.json"
    await run_schemathesis(
        schema, api_key, tmp_path, checks=f"{CONFORMANCE},no_internal_detail", max_examples=40, seed=1
    )


async def test_schemathesis_on_embeddings_and_models(live, api_key, tmp_path: Path) -> None:
    """Positive and negative generated requests on embeddings and models; chat completions has its own run
    above (the chat schema is too large for the coverage phase within the test's time)."""
    await run_schemathesis(
        f"http://127.0.0.1:{live.port}/openapi.json",
        api_key,
        tmp_path,
        checks=CONFORMANCE,
        max_examples=60,
        seed=3,
        phases="examples,coverage,fuzzing",
        extra=("--include-path-regex", "^/v1/(embeddings|models.*)$"),
        timeout_s=180,
    )


async def test_schemathesis_on_responses_and_messages(live, api_key, tmp_path: Path) -> None:
    """Positive and negative generated requests on Responses and Messages and their token counts."""
    await run_schemathesis(
        f"http://127.0.0.1:{live.port}/openapi.json",
        api_key,
        tmp_path,
        checks=CONFORMANCE,
        max_examples=60,
        seed=2,
        phases="examples,coverage,fuzzing",
        extra=(
            "--include-path-regex",
            "^/v1/(responses|responses/input_tokens|messages|messages/count_tokens)$",
        ),
        timeout_s=120,
    )
