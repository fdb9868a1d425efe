"""Cloud credentials kept fresh in the background: Google OAuth tokens, Entra ID tokens, AWS keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from atp_common.errors import ConfigError
from atp_common.tasks import cancel_and_wait

log = logging.getLogger("atp.adapters.cloud_auth")

GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"
# Refresh this long before a credential expires, so no request ever carries an expired one.
DEFAULT_MARGIN_S = 300.0
# Credentials that do not say when they expire (static AWS keys) are re-read this often.
_UNKNOWN_EXPIRY_S = 900.0
# An early refresh (after a 401) is asked for at most this often; a scheduled one waits at least the floor.
_MIN_REFRESH_GAP_S = 5.0
_MIN_WAIT_S = 1.0
_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class RefreshingCredential:
    """A credential fetched once at start-up and then refreshed by an owned background task.

    Readers take `value` per request (an attribute read, no I/O) and compare `version` to notice a
    refresh, the same contract as a rotating secret (atp_adapters.secrets.SecretRef). `request_refresh()`
    (after a 401) wakes the task early, at most once per few seconds. The blocking fetch of each cloud
    library runs in a worker thread, never on the event loop and never on a request's path.
    """

    def __init__(self, name: str, fetch: Callable[[], tuple[Any, float | None]], margin_s: float):
        self.name = name
        self._fetch = fetch
        self._margin_s = margin_s
        self.value: Any = ""
        self.version = 0
        self.expires_at: float | None = None
        self._wake = asyncio.Event()
        self._last_early = -_MIN_REFRESH_GAP_S
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Fetch the first credential (a failure is a ConfigError: the process must not serve without it)
        and start the refresh task."""
        try:
            await self._refresh()
        except Exception as exc:
            raise ConfigError(f"cannot obtain {self.name} credentials: {exc}") from exc
        self._task = asyncio.create_task(self._run(), name=f"refresh-{self.name}")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def request_refresh(self) -> None:
        """Refresh soon: the provider refused the current credential (at most once per few seconds, so a
        provider that refuses every token cannot make us hammer the token service)."""
        now = time.monotonic()
        if now - self._last_early >= _MIN_REFRESH_GAP_S:
            self._last_early = now
            self._wake.set()

    async def _refresh(self) -> None:
        value, expires_at = await asyncio.to_thread(self._fetch)
        self.expires_at = expires_at
        if value != self.value:
            self.value = value
            self.version += 1

    def _next_wait(self) -> float:
        if self.expires_at is None:
            return _UNKNOWN_EXPIRY_S
        return max(self.expires_at - time.time() - self._margin_s, _MIN_WAIT_S)

    async def _run(self) -> None:
        failures = 0
        while True:
            wait = self._next_wait() if failures == 0 else _RETRY_S[min(failures, len(_RETRY_S)) - 1]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._refresh()
                failures = 0
            except Exception as exc:
                # The last good credential stays in use until it expires; keep trying.
                failures += 1
                log.warning("refreshing %s credentials failed (%d): %s", self.name, failures, exc)


def google_credential(credentials_file: str, margin_s: float = DEFAULT_MARGIN_S) -> RefreshingCredential:
    """An OAuth access token for Vertex AI: from a service-account file, else the application default
    credentials (workload identity, GOOGLE_APPLICATION_CREDENTIALS, the metadata server)."""
    import google.auth
    import google.auth.transport.requests
    from google.oauth2 import service_account

    if credentials_file:
        credentials = service_account.Credentials.from_service_account_file(
            credentials_file, scopes=[GOOGLE_SCOPE]
        )
    else:
        credentials, _project = google.auth.default(scopes=[GOOGLE_SCOPE])
    transport = google.auth.transport.requests.Request()

    def fetch() -> tuple[str, float | None]:
        credentials.refresh(transport)
        return credentials.token, _utc_timestamp(credentials.expiry)

    return RefreshingCredential("google", fetch, margin_s)


def _utc_timestamp(expiry: Any) -> float | None:
    if expiry is None:
        return None
    import datetime

    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=datetime.UTC)
    return float(expiry.timestamp())


def azure_credential(
    method: str,
    *,
    tenant_id: str = "",
    client_id: str = "",
    client_secret: str = "",
    scope: str = AZURE_OPENAI_SCOPE,
    margin_s: float = DEFAULT_MARGIN_S,
) -> RefreshingCredential:
    """An Entra ID token for Azure OpenAI, by `method`: `client_secret`, `managed_identity` (optionally
    a user-assigned `client_id`), `workload_identity` (AKS: the AZURE_* variables the webhook sets) or
    `default` (azure-identity's DefaultAzureCredential chain)."""
    from azure import identity

    credential: Any
    if method == "client_secret":
        credential = identity.ClientSecretCredential(tenant_id, client_id, client_secret)
    elif method == "managed_identity":
        credential = identity.ManagedIdentityCredential(client_id=client_id or None)
    elif method == "workload_identity":
        kwargs = {k: v for k, v in (("tenant_id", tenant_id), ("client_id", client_id)) if v}
        credential = identity.WorkloadIdentityCredential(**kwargs)
    elif method == "default":
        credential = identity.DefaultAzureCredential()
    else:
        raise ConfigError(f"unknown Entra ID credential method {method!r}")

    def fetch() -> tuple[str, float | None]:
        token = credential.get_token(scope)
        return token.token, float(token.expires_on)

    return RefreshingCredential("azure", fetch, margin_s)


def aws_credential(profile: str = "", margin_s: float = DEFAULT_MARGIN_S) -> RefreshingCredential:
    """AWS credentials from botocore's standard chain (environment, shared profile, web identity / IRSA,
    container and instance roles), frozen so signing never refreshes on a request's path."""
    import botocore.session

    session = botocore.session.Session(profile=profile or None)
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError("no AWS credentials found (environment, profile, web identity or instance role)")

    def fetch() -> tuple[Any, float | None]:
        frozen = credentials.get_frozen_credentials()
        expiry = getattr(credentials, "_expiry_time", None)
        return frozen, _utc_timestamp(expiry)

    return RefreshingCredential("aws", fetch, margin_s)


def credential_for(cfg: Any, client_secret: str = "") -> RefreshingCredential | None:
    """The cloud credential a provider configuration authenticates with, or None (an API key or none)."""
    if cfg.type == "bedrock":
        return aws_credential(cfg.aws_profile)
    if cfg.type == "vertex":
        return google_credential(cfg.credentials_file)
    if cfg.type == "azure" and cfg.auth == "entra":
        return azure_credential(
            cfg.entra_credential,
            tenant_id=cfg.entra_tenant_id,
            client_id=cfg.entra_client_id,
            client_secret=client_secret,
        )
    return None
