"""build_provider and secret references."""

from __future__ import annotations

from pathlib import Path

import pytest

from atp_adapters.providers import (
    AnthropicProvider,
    GeminiProvider,
    LocalProvider,
    OpenAIProvider,
    build_provider,
    resolve_secret,
)
from atp_common.config import HttpProvider
from atp_common.config import LocalProvider as LocalConfig
from atp_common.errors import ConfigError


def test_resolve_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATP_TEST_KEY", "sk-env")
    assert resolve_secret("env:ATP_TEST_KEY") == "sk-env"
    secret_file = tmp_path / "key"
    secret_file.write_text("sk-file\n")
    assert resolve_secret(f"file:{secret_file}") == "sk-file"
    assert resolve_secret("") == ""


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("env:ATP_SURELY_UNSET_VARIABLE", "not set"),
        ("file:/nonexistent/key", "cannot read"),
        ("vault:secret/atp#openai", "Vault"),
        ("sk-literal-key", "reference"),
        ("s3:bucket/key", "unknown scheme"),
    ],
)
def test_bad_references_are_config_errors(ref: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        resolve_secret(ref)


async def test_build_provider_picks_the_class_and_resolves_the_key() -> None:
    seen = []

    def resolver(ref: str) -> str:
        seen.append(ref)
        return "resolved"

    assert isinstance(build_provider("local", LocalConfig()), LocalProvider)
    kinds = {"openai": OpenAIProvider, "azure": OpenAIProvider, "anthropic": AnthropicProvider}
    kinds["gemini"] = GeminiProvider
    for kind, cls in kinds.items():
        cfg = HttpProvider(type=kind, base_url="http://127.0.0.1:9", api_key="vault:kv/atp#" + kind)
        provider = build_provider(kind + "-main", cfg, resolver)
        assert type(provider) is cls and provider.name == kind + "-main"
        await provider.close()
    assert seen == [
        "vault:kv/atp#openai",
        "vault:kv/atp#azure",
        "vault:kv/atp#anthropic",
        "vault:kv/atp#gemini",
    ]
    with pytest.raises(ConfigError):
        build_provider(
            "x", HttpProvider(type="openai", base_url="http://x", api_key="env:ATP_SURELY_UNSET_VARIABLE")
        )
