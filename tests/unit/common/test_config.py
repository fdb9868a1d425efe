"""The configuration file: the example parses, references are checked, mistakes are refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from atp_common.config import builtin_config, hash_api_key, load_config
from atp_common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_example_file_is_valid():
    config = load_config(ROOT / "atp.example.yaml")
    assert config.default_route == "auto"
    assert config.routes["canary"].weights == [0.9, 0.1]
    assert config.models["gpt-4o-mini"].cached_input_usd_per_mtok == 0.075


def test_builtin_default_serves_auto_locally_with_the_env_key():
    config = builtin_config("secret-key")
    assert config.routes["auto"].candidates == ["local-small", "local-large"]
    assert config.tenants["local"].api_keys[0].hash == hash_api_key("secret-key")
    assert "secret-key" not in config.model_dump_json()


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "providers: {}\nmodels: {m: {provider: nope}}\nroutes: {auto: {candidates: [m]}}",
            "unknown provider",
        ),
        (
            "providers: {local: {type: local}}\nmodels: {m: {provider: local}}\nroutes: {auto: {candidates: [x]}}",
            "unknown model",
        ),
        (
            "providers: {local: {type: local, typo: 1}}\nmodels: {}\nroutes: {}",
            "typo",
        ),
        (
            "providers: {local: {type: local}}\nmodels: {m: {provider: local}}\n"
            "routes: {auto: {candidates: [m], weights: [0.5, 0.5]}}",
            "one entry per candidate",
        ),
        ("providers: [", "cannot read"),
    ],
)
def test_mistakes_are_refused_with_a_clear_message(tmp_path, yaml_text, message):
    path = tmp_path / "atp.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_digest_changes_with_content():
    assert builtin_config("a").digest() != builtin_config("b").digest()
    assert builtin_config("a").digest() == builtin_config("a").digest()


async def test_the_deprecated_admin_role_is_read_as_operator_with_one_warning_per_key(tmp_path, caplog):
    import orjson

    from atp_common.config import TenantConfig
    from atp_common.limits.directory import FileDirectoryStore

    digest = "ab" * 32
    tenant = {"api_keys": [{"hash": f"sha256:{digest}", "role": "admin", "name": "old-admin"}]}
    with caplog.at_level("WARNING", logger="atp.config"):
        for _ in range(3):  # a configuration reloaded keeps the key and warns once
            assert TenantConfig.model_validate(tenant).api_keys[0].role == "operator"
        # A key stored by the admin API before roles were scoped, read on every directory refresh.
        path = tmp_path / "tenants.json"
        record = {"key_id": "key_old", "digest": "cd" * 32, "tenant": "acme", "role": "admin", "name": "ci"}
        path.write_bytes(orjson.dumps({"keys": {"key_old": record}, "tenants": {}}))
        store = FileDirectoryStore(path)
        for _ in range(3):
            assert (await store.load()).keys["key_old"].role == "operator"
    warnings = [r.getMessage() for r in caplog.records if "deprecated role 'admin'" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert f"cfg_{digest[:16]}" in warnings[0] and "key_old" in warnings[1]
    # Never the digest itself beyond the id's prefix.
    assert digest not in " ".join(warnings)
