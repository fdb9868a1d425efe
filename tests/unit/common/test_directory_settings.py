"""One directory settings mixin for every service: ATP_REDIS_URL serves all, a service's own variable wins."""

from __future__ import annotations

import pytest
from pydantic_settings import SettingsConfigDict

from atp_common.config import load_config
from atp_common.limits.directory import FileDirectoryStore, RedisDirectoryStore, follow_directory
from atp_common.settings import DirectorySettings, ServiceSettings


class _Settings(ServiceSettings, DirectorySettings):
    model_config = SettingsConfigDict(**{**ServiceSettings.model_config, "env_prefix": "ATP_SVC_"})


def test_the_shared_redis_url_applies_unless_the_service_sets_its_own(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ATP_REDIS_URL", "redis://shared:6379/0")
    assert _Settings().redis_url == "redis://shared:6379/0"
    monkeypatch.setenv("ATP_SVC_REDIS_URL", "redis://own:6379/0")
    assert _Settings().redis_url == "redis://own:6379/0"
    # An explicit empty value turns Redis off for this service even when the suite has one.
    monkeypatch.setenv("ATP_SVC_REDIS_URL", "")
    assert _Settings().redis_url == ""
    assert _Settings(redis_url="redis://given:6379/0").redis_url == "redis://given:6379/0"


async def test_the_factory_follows_the_store_the_settings_name(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ATP_REDIS_URL", raising=False)
    local = follow_directory(
        _Settings(directory_path=str(tmp_path / "t.json"), directory_poll_s=0.5), load_config("")
    )
    assert isinstance(local.store, FileDirectoryStore)
    shared = follow_directory(
        _Settings(redis_url="redis://127.0.0.1:6379/0", redis_prefix="x:"), load_config("")
    )
    assert isinstance(shared.store, RedisDirectoryStore)
    for follower in (local, shared):
        await follower.close()
