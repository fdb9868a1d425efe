"""Secret references and the Vault backend, against a real in-test HTTP server speaking Vault's API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from atp_adapters.secrets import (
    Reference,
    SecretError,
    SecretResolver,
    VaultBackend,
    VaultSettings,
    parse_reference,
    resolve_static,
)
from atp_common.errors import ConfigError
from tests.fakes.vault import FakeVault, running_fake_vault


async def eventually(check: Callable[[], bool | Awaitable[bool]], within_s: float = 5.0) -> None:
    """Poll `check` until it holds; fail after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def settings(vault: FakeVault | None = None, **overrides: object) -> VaultSettings:
    values: dict[str, object] = {"addr": vault.addr if vault else "", "timeout_s": 1.0, **overrides}
    return VaultSettings(**values)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# References.


def test_parse_references() -> None:
    assert parse_reference("env:OPENAI_KEY") == Reference("env", "OPENAI_KEY")
    assert parse_reference("file:/run/secrets/key") == Reference("file", "/run/secrets/key")
    assert parse_reference("vault:/atp/providers/#openai") == Reference("vault", "atp/providers", "openai")
    assert str(parse_reference("vault:atp/p#k")) == "vault:atp/p#k"


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("sk-literal", "must be a reference"),
        ("s3:bucket/key", "unknown scheme"),
        ("vault:atp/providers", "vault:path#key"),
        ("vault:#key", "vault:path#key"),
        ("env:", "must be a reference"),
    ],
)
def test_bad_references(ref: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_reference(ref)


async def test_env_and_file_references_and_file_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATP_TEST_SECRET", "from-env")
    key_file = tmp_path / "key"
    key_file.write_text("v1\n")
    resolver = SecretResolver()
    env_ref = await resolver.ref("env:ATP_TEST_SECRET")
    file_ref = await resolver.ref(f"file:{key_file}")
    assert (env_ref.value, file_ref.value) == ("from-env", "v1")
    assert await resolver.ref(f"file:{key_file}") is file_ref  # one live object per reference
    assert resolve_static(f"file:{key_file}") == "v1" and resolve_static("") == ""
    assert "v1" not in repr(file_ref)

    key_file.write_text("v2\n")  # Kubernetes swaps mounted secrets in place
    assert await resolver.refresh() == [file_ref]
    assert (file_ref.value, file_ref.version) == ("v2", 1)
    assert await resolver.refresh() == []
    key_file.unlink()
    assert await resolver.refresh() == []  # an unreadable file keeps the last good value
    assert file_ref.value == "v2"
    await resolver.close()


async def test_missing_secrets_and_vault_without_backend_are_config_errors() -> None:
    resolver = SecretResolver()
    with pytest.raises(SecretError, match="not set"):
        await resolver.ref("env:ATP_SURELY_UNSET_VARIABLE")
    with pytest.raises(SecretError, match="cannot read"):
        await resolver.ref("file:/nonexistent/key")
    with pytest.raises(SecretError, match="no Vault is configured"):
        await resolver.ref("vault:atp/p#k")
    with pytest.raises(ConfigError, match="no auth method"):
        VaultBackend(VaultSettings(addr="http://127.0.0.1:1"))


# Auth methods.


async def test_token_auth_reads_kv_v2_in_a_namespace() -> None:
    async with running_fake_vault() as vault:
        vault.put("atp/providers", {"openai": "sk-one", "anthropic": "sk-two"})
        token = vault.issue_token()
        resolver = SecretResolver.from_settings(settings(vault, token=token, namespace="team-a"))
        openai = await resolver.ref("vault:atp/providers#openai")
        anthropic = await resolver.ref("vault:atp/providers#anthropic")
        assert (openai.value, anthropic.value) == ("sk-one", "sk-two")
        assert vault.reads("atp/providers") == 1  # one read serves every field of a path
        assert ("GET", "/v1/auth/token/lookup-self") in vault.calls
        assert set(vault.namespaces) == {"team-a"}
        with pytest.raises(SecretError, match="no field 'gemini'"):
            await resolver.ref("vault:atp/providers#gemini")
        with pytest.raises(SecretError, match="not found"):
            await resolver.ref("vault:atp/missing#k")
        await resolver.close()


async def test_custom_kv_mount() -> None:
    async with running_fake_vault() as vault:
        vault.put("llm", {"key": "sk-kv"}, mount="kv")
        resolver = SecretResolver.from_settings(settings(vault, token=vault.issue_token(), mount="kv"))
        assert await resolver.resolve("vault:llm#key") == "sk-kv"
        await resolver.close()


async def test_approle_login() -> None:
    async with running_fake_vault(approles={"role-1": "secret-1"}) as vault:
        vault.put("atp/providers", {"openai": "sk-approle"})
        resolver = SecretResolver.from_settings(settings(vault, role_id="role-1", secret_id="secret-1"))
        assert await resolver.resolve("vault:atp/providers#openai") == "sk-approle"
        assert vault.logins == {"approle": 1}

        wrong = SecretResolver.from_settings(settings(vault, role_id="role-1", secret_id="nope"))
        with pytest.raises(SecretError, match="approle login: InvalidRequest"):
            await wrong.resolve("vault:atp/providers#openai")
        await resolver.close()
        await wrong.close()


async def test_kubernetes_login_reads_the_service_account_token(tmp_path: Path) -> None:
    jwt = tmp_path / "token"
    jwt.write_text("eyJ.service-account.jwt\n")
    async with running_fake_vault(k8s_roles={"atp": "eyJ.service-account.jwt"}) as vault:
        vault.put("atp/providers", {"openai": "sk-k8s"})
        resolver = SecretResolver.from_settings(settings(vault, k8s_role="atp", k8s_token_path=str(jwt)))
        assert await resolver.resolve("vault:atp/providers#openai") == "sk-k8s"
        assert vault.logins == {"kubernetes": 1}
        await resolver.close()

        missing = SecretResolver.from_settings(
            settings(vault, k8s_role="atp", k8s_token_path=str(tmp_path / "absent"))
        )
        with pytest.raises(SecretError, match="kubernetes login"):
            await missing.resolve("vault:atp/providers#openai")
        await missing.close()


# Leases.


async def test_token_is_renewed_before_it_expires() -> None:
    async with running_fake_vault(approles={"r": "s"}, login_ttl_s=0.6) as vault:
        vault.put("atp/providers", {"openai": "sk"})
        backend = VaultBackend(settings(vault, role_id="r", secret_id="s", timeout_s=0.2, renew_fraction=0.5))
        resolver = SecretResolver(backend, cache_ttl_s=60)
        await resolver.ref("vault:atp/providers#openai")
        resolver.start()
        await eventually(lambda: vault.renewals >= 3)
        # Three renewals in: the token outlived its first 0.6 s lease, and no second login was needed.
        assert backend.logins == 1 and vault.logins == {"approle": 1}
        assert await resolver.refresh() == []
        await resolver.close()


async def test_login_again_when_renewal_fails() -> None:
    async with running_fake_vault(approles={"r": "s"}, login_ttl_s=0.6, renew_fails=True) as vault:
        vault.put("atp/providers", {"openai": "sk"})
        backend = VaultBackend(settings(vault, role_id="r", secret_id="s", timeout_s=0.2, renew_fraction=0.5))
        resolver = SecretResolver(backend, cache_ttl_s=60)
        await resolver.ref("vault:atp/providers#openai")
        resolver.start()
        await eventually(lambda: vault.logins.get("approle", 0) >= 3)
        assert vault.renewals == 0 and ("POST", "/v1/auth/token/renew-self") in vault.calls
        vault.put("atp/providers", {"openai": "sk-rotated"})
        await resolver.refresh()
        assert await resolver.resolve("vault:atp/providers#openai") == "sk-rotated"
        await resolver.close()


async def test_a_revoked_token_is_replaced_by_a_new_login_on_read() -> None:
    async with running_fake_vault(approles={"r": "s"}) as vault:
        vault.put("atp/providers", {"openai": "v1"})
        resolver = SecretResolver.from_settings(settings(vault, role_id="r", secret_id="s"))
        secret = await resolver.ref("vault:atp/providers#openai")
        vault.revoke_all()
        vault.put("atp/providers", {"openai": "v2"})
        assert await resolver.refresh() == [secret] and secret.value == "v2"
        assert vault.logins == {"approle": 2}
        await resolver.close()


# Rotation and outages.


async def test_rotation_is_picked_up_in_the_background_and_on_request() -> None:
    async with running_fake_vault() as vault:
        vault.put("atp/providers", {"openai": "v1"})
        resolver = SecretResolver.from_settings(
            settings(vault, token=vault.issue_token(), cache_ttl_s=0.2, min_refresh_s=0.0)
        )
        secret = await resolver.ref("vault:atp/providers#openai")
        resolver.start()
        vault.put("atp/providers", {"openai": "v2"})
        await eventually(lambda: secret.value == "v2")  # by the cache TTL
        await resolver.close()

        slow = SecretResolver.from_settings(
            settings(vault, token=vault.issue_token(), cache_ttl_s=3600, min_refresh_s=0.0)
        )
        secret = await slow.ref("vault:atp/providers#openai")
        slow.start()
        vault.put("atp/providers", {"openai": "v3"})
        secret.request_refresh()  # e.g. the provider answered 401
        await eventually(lambda: secret.value == "v3")
        assert secret.version == 1
        await slow.close()


async def test_vault_down_is_a_clear_error_not_a_hang() -> None:
    closed = SecretResolver.from_settings(
        VaultSettings(addr=f"http://127.0.0.1:{free_port()}", token="t", timeout_s=0.5)
    )
    started = time.monotonic()
    with pytest.raises(SecretError, match=r"cannot reach http://127\.0\.0\.1"):
        await closed.resolve("vault:atp/providers#openai")
    assert time.monotonic() - started < 2.0
    await closed.close()

    async with running_fake_vault() as vault:
        vault.put("atp/providers", {"openai": "v1"})
        resolver = SecretResolver.from_settings(settings(vault, token=vault.issue_token(), timeout_s=0.3))
        secret = await resolver.ref("vault:atp/providers#openai")
        vault.hang_s = 3.0
        started = time.monotonic()
        assert await resolver.refresh() == []  # the last good value stays in use
        assert secret.value == "v1" and time.monotonic() - started < 2.0
        vault.hang_s = 0.0
        hung = SecretResolver.from_settings(settings(vault, token=vault.issue_token(), timeout_s=0.3))
        vault.hang_s = 3.0
        started = time.monotonic()
        with pytest.raises(SecretError, match=r"no answer from .* within 0\.3s"):
            await hung.resolve("vault:atp/providers#openai")
        assert time.monotonic() - started < 2.0
        vault.hang_s = 0.0
        await resolver.close()
        await hung.close()
