"""Typed settings every service shares; each service subclasses ServiceSettings with its own env prefix."""

from __future__ import annotations

import os
import socket
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that look filled in but are not: refuse to start with them.
_PLACEHOLDERS = {"changeme", "change-me", "todo", "xxx", "<set-me>", "replace-me"}


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    """Settings common to every gRPC service. Environment: ATP_<SERVICE>_<NAME>, a few shared as ATP_<NAME>."""

    # `ATP_<SVC>_METRICS_PORT=none` turns an optional listener off.
    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, env_prefix="ATP_", env_parse_none_str="none"
    )

    host: str = Field("127.0.0.1", description="Address the gRPC listener binds.")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus port; unset disables.")
    config_path: str = Field(
        "",
        validation_alias=AliasChoices("config_path", "ATP_CONFIG"),
        description="The ATP YAML file; empty uses the built-in defaults.",
    )
    log_level: str = Field("INFO", validation_alias=AliasChoices("log_level", "ATP_LOG_LEVEL"))
    log_json: bool = Field(True, validation_alias=AliasChoices("log_json", "ATP_LOG_JSON"))
    otlp_endpoint: str = Field("", validation_alias=AliasChoices("otlp_endpoint", "ATP_OTLP_ENDPOINT"))
    tracing: bool = Field(False, validation_alias=AliasChoices("tracing", "ATP_TRACING"))
    drain_delay_s: float = Field(1.0, ge=0, description="Wait after NOT_SERVING so balancers notice.")
    grace_s: float = Field(20.0, ge=0, description="How long in-flight calls may run after the drain starts.")
    close_timeout_s: float = Field(5.0, gt=0, description="Bound on closing clients and flushing queues.")
    replica_id: str = Field(default_factory=_default_replica_id)
    tls_cert: str = Field("", description="PEM certificate: served by gRPC servers, presented by clients.")
    tls_key: str = Field("", description="PEM private key of tls_cert.")
    tls_ca: str = Field("", description="PEM CA bundle: servers require client certs it signed (mTLS).")

    @field_validator("*", mode="after")
    @classmethod
    def _no_placeholders(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in _PLACEHOLDERS:
            raise ValueError(f"placeholder value {value!r} must be replaced")
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> ServiceSettings:
        # Half a key pair would fail only at the first connection; refuse it at start-up instead.
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key must be set together")
        return self


class ConfigReloadSettings(BaseSettings):
    """For services that follow changes to the configuration file without a restart."""

    config_poll_s: float = Field(1.0, gt=0, description="How often the config file's mtime is checked.")
    reload_on_sighup: bool = Field(True, description="Reload the configuration on SIGHUP too.")


class DirectorySettings(BaseSettings):
    """For services that follow the tenant directory (keys, revocations, tenant overrides): where it is
    stored and how often its version is checked. Environment: ATP_<SERVICE>_<NAME>; ATP_REDIS_URL serves
    every service that sets no redis_url of its own."""

    redis_url: str = Field(
        "", description="Redis holding the directory and shared counters; empty: directory_path, local."
    )
    redis_prefix: str = Field("atp:", description="Prefix of every Redis key ATP reads or writes.")
    directory_path: str = Field("var/tenants.json", description="The directory file when there is no Redis.")
    directory_poll_s: float = Field(
        0.25, gt=0, description="How often the directory's version is checked (the revocation delay)."
    )

    @model_validator(mode="before")
    @classmethod
    def _shared_redis_url(cls, data: Any) -> Any:
        # One variable for the whole suite (compose, the chart); a service's own variable wins.
        shared = os.environ.get("ATP_REDIS_URL")
        if isinstance(data, dict) and shared and "redis_url" not in data:
            return {**data, "redis_url": shared}
        return data
