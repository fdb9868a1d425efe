"""Typed Vault settings (environment prefix ATP_VAULT_), shared by every service that resolves secrets."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

K8S_SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class VaultSettings(BaseSettings):
    """Where Vault is and how to log in. Exactly one auth method is used, in this order: a token,
    AppRole (role id and secret id), Kubernetes (role and the pod's service-account token)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_prefix="ATP_VAULT_")

    addr: str = Field("", description="Vault URL, e.g. https://vault:8200; empty disables vault: refs.")
    token: SecretStr = Field(SecretStr(""), description="A Vault token (token auth).")
    role_id: str = Field("", description="AppRole role id.")
    secret_id: SecretStr = Field(SecretStr(""), description="AppRole secret id.")
    approle_mount: str = Field("approle", description="Mount path of the AppRole auth method.")
    k8s_role: str = Field("", description="Vault role for Kubernetes auth.")
    k8s_token_path: str = Field(K8S_SERVICE_ACCOUNT_TOKEN, description="The service-account JWT.")
    k8s_mount: str = Field("kubernetes", description="Mount path of the Kubernetes auth method.")
    mount: str = Field("secret", description="Mount path of the KV v2 engine that holds the secrets.")
    namespace: str = Field("", description="Vault Enterprise namespace; empty for none.")
    ca_cert: str = Field("", description="CA bundle to verify Vault's certificate; empty uses the system's.")
    timeout_s: float = Field(5.0, gt=0, description="Deadline of one Vault HTTP call.")
    cache_ttl_s: float = Field(300.0, gt=0, description="How long a read secret is used before re-reading.")
    min_refresh_s: float = Field(
        1.0, ge=0, description="Least time between re-reads that providers ask for (after a 401)."
    )
    renew_fraction: float = Field(
        2 / 3, gt=0, lt=1, description="Share of the token's lease after which it is renewed."
    )

    @property
    def auth_method(self) -> str:
        """Which auth method the settings select: token, approle, kubernetes or none."""
        if self.token.get_secret_value():
            return "token"
        if self.role_id:
            return "approle"
        if self.k8s_role:
            return "kubernetes"
        return "none"
