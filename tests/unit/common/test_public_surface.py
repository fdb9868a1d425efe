"""Each package's public surface is pinned: a name added to or dropped from `__all__` is a decision."""

from __future__ import annotations

import importlib

import pytest

SURFACES = {
    "atp_common": {
        "AtpConfig",
        "AtpError",
        "Component",
        "ConfigReloadSettings",
        "DirectorySettings",
        "Lifecycle",
        "RunningServer",
        "ServiceRegistration",
        "ServiceSettings",
        "from_rpc_error",
        "load_config",
        "open_lifecycle",
        "run_main",
        "run_service",
        "run_until_signal",
        "serve",
        "start_server",
    },
    "atp_common.lifecycle": {"Component", "Lifecycle", "ServiceLife", "open_lifecycle", "run_until_signal"},
    "atp_common.policy": {
        "CACHE_POLICY",
        "DIRECT_POLICY",
        "FEATURE_DIM",
        "FEATURE_NAMES",
        "POLICY_KINDS",
        "POLICY_NAMES",
        "UNLEARNED_POLICIES",
        "CompiledPolicy",
        "RouteArms",
        "compute_features",
        "model_specs",
        "snapshot_from_config",
    },
    "atp_common.limits": {"Check", "TenantLimits", "compile_limits", "with_key_limits"},
    "atp_adapters.limits": {
        "Limiter",
        "MemoryBackend",
        "RedisBackend",
        "StoreUnavailable",
        "Ticket",
        "open_limiter",
    },
    "atp_adapters": {"AdaptersParts", "AdaptersSettings", "build_server"},
    "atp_router": {"RouterSettings", "build_server"},
    "atp_observer": {"ObserverSettings", "build_server", "make_store"},
    "atp_gateway": {"GatewayServer", "GatewaySettings", "create_app", "serve"},
    "atp_tools": set(),
    "atp_adapters.secrets": {
        "Reference",
        "SecretDenied",
        "SecretError",
        "SecretRef",
        "SecretResolver",
        "VaultBackend",
        "VaultSettings",
        "parse_reference",
        "read_static",
        "resolve_static",
    },
}


@pytest.mark.parametrize("package", sorted(SURFACES))
def test_the_public_surface_is_exactly_the_pinned_one(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == SURFACES[package]
    # Every exported name exists, so `from package import *` cannot fail.
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_a_service_package_imports_its_surface_only_when_asked() -> None:
    """`import atp_gateway.settings` must not pull in the app: the supervisor process relies on it."""
    import subprocess
    import sys

    probe = (
        "import sys, atp_gateway.settings, atp_adapters.limits; "
        "assert 'atp_gateway.app' not in sys.modules and 'atp_adapters.server' not in sys.modules; "
        "import atp_gateway; assert atp_gateway.create_app.__module__ == 'atp_gateway.app'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    import atp_router

    with pytest.raises(AttributeError, match="'atp_router' has no attribute 'nope'"):
        _ = atp_router.nope  # type: ignore[attr-defined]
