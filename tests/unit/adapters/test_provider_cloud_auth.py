"""Vertex AI and Azure Entra ID providers with real google-auth and azure-identity against fake token services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import orjson
import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.providers import (
    OpenAIProvider,
    ProviderError,
    ProviderRequest,
    VertexAnthropicProvider,
    VertexGeminiProvider,
)
from atp_adapters.providers.cloud_auth import RefreshingCredential, azure_credential, google_credential
from atp_common.config import HttpProvider
from atp_common.errors import ConfigError
from tests.fakes import FakeOpenAI, FakeReply
from tests.fakes.cloud_tokens import (
    FakeAzureManagedIdentity,
    FakeGoogleOAuth,
    FakeVertexAnthropic,
    FakeVertexGemini,
)

PROJECT, LOCATION = "atp-project", "europe-west4"


async def text_of(provider: object, stream: bool = False) -> str:
    request = ProviderRequest(
        "some-model",
        [chat_pb2.ChatMessage(role="user", content="hello")],
        chat_pb2.GenerationParams(),
        stream=stream,
    )
    text = ""
    async with aclosing(provider.stream(request)) as batches:  # type: ignore[attr-defined]
        async for batch in batches:
            text += "".join(d.content for d in batch.deltas)
    return text


async def until_version(credential: RefreshingCredential, version: int, within_s: float = 8.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if credential.version >= version:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the credential stayed at version {credential.version}")


@pytest.fixture
async def oauth() -> AsyncIterator[FakeGoogleOAuth]:
    server = FakeGoogleOAuth()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def key_file(oauth: FakeGoogleOAuth, tmp_path: Path) -> str:
    path = tmp_path / "service-account.json"
    path.write_bytes(orjson.dumps(oauth.service_account_info()))
    return str(path)


def vertex_config(base_url: str, publisher: str = "google") -> HttpProvider:
    return HttpProvider(
        type="vertex",
        project=PROJECT,
        location=LOCATION,
        publisher=publisher,
        base_url=base_url,
        max_retries=0,
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_on_vertex_with_a_service_account_token(
    oauth: FakeGoogleOAuth, key_file: str, stream: bool
) -> None:
    fake = FakeVertexGemini(oauth, PROJECT, LOCATION)
    await fake.start()
    credential = google_credential(key_file)
    await credential.start()
    provider = VertexGeminiProvider(vertex_config(f"http://127.0.0.1:{fake.port}"), credential)
    try:
        fake.reply = FakeReply(text="Hallo aus Vertex.")
        assert await text_of(provider, stream) == "Hallo aus Vertex."
    finally:
        await provider.close()
        await credential.close()
        await fake.stop()
    recorded = fake.requests[-1]
    method = "streamGenerateContent" if stream else "generateContent"
    assert (
        recorded.path
        == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/some-model:{method}"
    )
    assert recorded.headers["Authorization"] == "Bearer ya29.fake-1"
    assert "x-goog-api-key" not in {k.lower() for k in recorded.headers}
    assert oauth.refusals == []


async def test_claude_on_vertex_sends_the_messages_body_for_vertex(
    oauth: FakeGoogleOAuth, key_file: str
) -> None:
    fake = FakeVertexAnthropic(oauth, PROJECT, LOCATION)
    await fake.start()
    credential = google_credential(key_file)
    await credential.start()
    provider = VertexAnthropicProvider(
        vertex_config(f"http://127.0.0.1:{fake.port}", "anthropic"), credential
    )
    try:
        fake.reply = FakeReply(text="Hi from Claude on Vertex.")
        assert await text_of(provider, stream=True) == "Hi from Claude on Vertex."
    finally:
        await provider.close()
        await credential.close()
        await fake.stop()
    body = fake.requests[-1].body
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert fake.requests[-1].path.endswith("/publishers/anthropic/models/some-model:streamRawPredict")


async def test_a_401_refreshes_the_token_early_and_the_next_call_succeeds(
    oauth: FakeGoogleOAuth, key_file: str
) -> None:
    fake = FakeVertexGemini(oauth, PROJECT, LOCATION)
    await fake.start()
    credential = google_credential(key_file)
    await credential.start()
    provider = VertexGeminiProvider(vertex_config(f"http://127.0.0.1:{fake.port}"), credential)
    try:
        oauth.valid.clear()  # the token was revoked at the source
        with pytest.raises(ProviderError) as caught:
            await text_of(provider)
        assert caught.value.status == 401
        await until_version(credential, 2)
        assert await text_of(provider)
    finally:
        await provider.close()
        await credential.close()
        await fake.stop()
    assert fake.requests[-1].headers["Authorization"] == "Bearer ya29.fake-2"


async def test_tokens_refresh_in_the_background_before_they_expire(
    oauth: FakeGoogleOAuth, key_file: str
) -> None:
    oauth.lifetime_s = 3
    credential = google_credential(key_file, margin_s=2.0)
    await credential.start()
    try:
        assert credential.value == "ya29.fake-1"
        await until_version(credential, 2, within_s=5.0)
        assert credential.value == "ya29.fake-2"
    finally:
        await credential.close()


async def test_a_credential_that_cannot_be_had_fails_the_start(
    oauth: FakeGoogleOAuth, tmp_path: Path
) -> None:
    info = oauth.service_account_info()
    info["client_email"] = "someone-else@example.com"
    path = tmp_path / "wrong.json"
    path.write_bytes(orjson.dumps(info))
    credential = google_credential(str(path))
    with pytest.raises(ConfigError, match="google"):
        await credential.start()
    assert oauth.refusals == ["invalid_grant: wrong issuer or audience"]


async def test_azure_openai_with_a_managed_identity_token(monkeypatch: pytest.MonkeyPatch) -> None:
    identity = FakeAzureManagedIdentity()
    await identity.start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.secret_header)
    fake = FakeOpenAI()
    await fake.start()
    credential = azure_credential("managed_identity")
    await credential.start()
    fake.api_key = credential.value
    cfg = HttpProvider(type="azure", base_url=f"http://127.0.0.1:{fake.port}", auth="entra", max_retries=0)
    provider = OpenAIProvider(cfg, credential, name="azure-eu")
    try:
        fake.reply = FakeReply(text="Hello from Azure.")
        assert await text_of(provider) == "Hello from Azure."
    finally:
        await provider.close()
        await credential.close()
        await fake.stop()
        await identity.stop()
    headers = {k.lower(): v for k, v in fake.requests[-1].headers.items()}
    assert headers["authorization"] == "Bearer eyJ.azure-1"
    assert "api-key" not in headers
    assert fake.requests[-1].path == "/openai/deployments/some-model/chat/completions"
    assert identity.refusals == []
