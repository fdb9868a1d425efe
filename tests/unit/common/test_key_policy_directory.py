"""The directory's view of key policy: budgets, model lists and expiry merged from the configuration file
and the admin API's records, and end-user budgets compiled with the tenant's and the key's checks."""

from __future__ import annotations

from atp_adapters.limits.leases import build_plan
from atp_common.config import AtpConfig
from atp_common.limits.directory import Directory, DirectoryState, KeyRecord, config_key_id

FILE_DIGEST = "a" * 64
FILE_KEY = config_key_id(FILE_DIGEST)
CONFIG = AtpConfig.model_validate(
    {
        "providers": {"local": {"type": "local"}},
        "models": {"m1": {"provider": "local"}, "m2": {"provider": "local"}},
        "routes": {"auto": {"candidates": ["m1", "m2"]}},
        "tenants": {
            "acme": {
                "requests_per_minute": 100,
                "user_daily_budget_usd": 2.0,
                "api_keys": [
                    {
                        "hash": "sha256:" + FILE_DIGEST,
                        "daily_budget_usd": 1.5,
                        "allowed_models": ["m1"],
                        "expires_at": "2030-01-01T00:00:00",
                    }
                ],
            },
            "free": {"api_keys": [{"hash": "sha256:" + "b" * 64}]},
        },
    }
)


def test_a_configuration_keys_policy_compiles_into_its_tenants_admission() -> None:
    directory = Directory(CONFIG)
    checks = directory.limits_for("acme", FILE_KEY).checks
    assert [(c.kind, c.suffix, c.limit) for c in checks] == [
        ("requests", "rm", 100),
        ("budget", f"k:{FILE_KEY}:bd", 1_500_000),
    ]
    models = directory.models_for(FILE_KEY)
    assert models is not None and models.allowed == frozenset({"m1"}) and not models.denied
    # A naive time in the file is UTC.
    assert directory.keys[FILE_DIGEST].expires_at == 1893456000.0


def test_records_override_the_files_lists_and_expiry_and_reset_returns_to_it() -> None:
    changed = KeyRecord(
        FILE_KEY,
        FILE_DIGEST,
        "acme",
        source="config",
        allowed_models=[],
        denied_models=["m2"],
        expires_at=0.0,
    )
    directory = Directory(CONFIG, DirectoryState("1", {FILE_KEY: changed}))
    models = directory.models_for(FILE_KEY)
    assert models is not None and models.allowed is None and models.denied == frozenset({"m2"})
    assert directory.keys[FILE_DIGEST].expires_at == 0.0  # 0: never
    reset = KeyRecord(FILE_KEY, FILE_DIGEST, "acme", source="config")
    back = Directory(CONFIG, DirectoryState("2", {FILE_KEY: reset}))
    assert back.models_for(FILE_KEY) == Directory(CONFIG).models_for(FILE_KEY)


def test_end_user_budgets_join_the_tenants_and_the_keys_checks_in_one_plan() -> None:
    directory = Directory(CONFIG)
    alice = directory.limits_for("acme", FILE_KEY, "alice")
    assert alice is directory.limits_for("acme", FILE_KEY, "alice")  # compiled once
    assert alice is not directory.limits_for("acme", FILE_KEY, "bob")
    assert [c.kind for c in alice.checks] == ["requests", "budget", "budget"]
    user_check = alice.checks[-1]
    assert user_check.limit == 2_000_000 and "end user 'alice'" in user_check.name
    plan = build_plan(alice, "atp:", 0.0)
    # Every counter under the tenant's hash tag: one script call, one Redis Cluster slot; the user by digest.
    assert all(k.startswith("atp:{acme}:") for k in plan.keys)
    assert "alice" not in plan.keys[-1] and ":u:" in plan.keys[-1]
    # No end user, or a tenant without user budgets: no user counter.
    assert directory.limits_for("acme", FILE_KEY) is directory.key_limits[FILE_KEY]
    assert directory.limits_for("free", "", "alice") is None
