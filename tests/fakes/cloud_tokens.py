"""Fake token services: Google's OAuth token endpoint (JWT bearer grant) and Azure's managed identity."""

from __future__ import annotations

import abc
import base64
import time
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .anthropic_checks import Invalid, check_count_request, counted_tokens
from .anthropic_server import FakeAnthropic
from .gemini_server import FakeGemini

GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AZURE_RESOURCE = "https://cognitiveservices.azure.com"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class TokenServer(abc.ABC):
    """Issues numbered tokens; `valid` is the set a fake provider accepts (revoke by clearing it)."""

    def __init__(self, lifetime_s: int = 3600) -> None:
        self.lifetime_s = lifetime_s
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.refusals: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _issue(self, prefix: str) -> str:
        token = f"{prefix}-{len(self.issued) + 1}"
        self.issued.append(token)
        self.valid.add(token)
        return token

    @abc.abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Serve this token service's endpoint on `app`."""

    async def start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class FakeGoogleOAuth(TokenServer):
    """POST /token with a service account's signed JWT assertion, as oauth2.googleapis.com/token."""

    def __init__(self, lifetime_s: int = 3600) -> None:
        super().__init__(lifetime_s)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "atp-test@atp-project.iam.gserviceaccount.com"

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def service_account_info(self) -> dict[str, Any]:
        """The JSON of a service-account key file whose tokens this server issues."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "type": "service_account",
            "project_id": "atp-project",
            "private_key_id": "key-1",
            "private_key": pem.decode(),
            "client_email": self.client_email,
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self.token)

    def _refusal(self, form: Any) -> str | None:
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return "unsupported_grant_type"
        header, payload, signature = str(form.get("assertion", "..")).split(".")
        try:
            self.key.public_key().verify(
                _b64decode(signature),
                f"{header}.{payload}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:
            return "invalid_grant: bad signature"
        claims = orjson.loads(_b64decode(payload))
        # Google wants its own token endpoint as the audience, wherever the request was sent.
        if claims.get("iss") != self.client_email or claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            return "invalid_grant: wrong issuer or audience"
        if GOOGLE_SCOPE not in str(claims.get("scope", "")).split():
            return "invalid_scope"
        if not claims.get("iat", 0) - 60 <= time.time() <= claims.get("exp", 0):
            return "invalid_grant: expired assertion"
        return None

    async def token(self, request: web.Request) -> web.Response:
        refusal = self._refusal(await request.post())
        if refusal is not None:
            self.refusals.append(refusal)
            return web.json_response({"error": refusal}, status=400)
        token = self._issue("ya29.fake")
        return web.json_response(
            {"access_token": token, "expires_in": self.lifetime_s, "token_type": "Bearer"}
        )


class FakeAzureManagedIdentity(TokenServer):
    """App Service's managed identity endpoint (IDENTITY_ENDPOINT, checked with X-IDENTITY-HEADER)."""

    secret_header = "fake-identity-header"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/msi/token"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/msi/token", self.token)

    async def token(self, request: web.Request) -> web.Response:
        if request.headers.get("x-identity-header") != self.secret_header:
            self.refusals.append("bad identity header")
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.query.get("resource") != AZURE_RESOURCE:
            self.refusals.append(f"resource {request.query.get('resource')}")
            return web.json_response({"error": "invalid_resource"}, status=400)
        token = self._issue("eyJ.azure")
        expires_on = int(time.time()) + self.lifetime_s
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": AZURE_RESOURCE,
                "token_type": "Bearer",
            }
        )


def _bearer_refusal(request: web.Request, tokens: TokenServer) -> web.Response | None:
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if token not in tokens.valid:
        body = {
            "error": {
                "code": 401,
                "message": "Request had invalid authentication credentials.",
                "status": "UNAUTHENTICATED",
            }
        }
        return web.json_response(body, status=401)
    return None


class FakeVertexGemini(FakeGemini):
    """Vertex AI's Gemini endpoints, accepting the tokens `tokens` issued."""

    def __init__(self, tokens: TokenServer, project: str, location: str) -> None:
        super().__init__()
        self.tokens, self.project, self.location = tokens, project, location
        self.count_wrapped = False

    def add_routes(self, app: web.Application) -> None:
        path = f"/v1/projects/{self.project}/locations/{self.location}/publishers/google/models/{{target}}"
        app.router.add_post(path, self.vertex)

    async def vertex(self, request: web.Request) -> web.StreamResponse:
        return _bearer_refusal(request, self.tokens) or await self.handle(request)


class FakeVertexAnthropic(FakeAnthropic):
    """Vertex AI's rawPredict endpoints for Anthropic's models: the Messages body without `model`."""

    def __init__(self, tokens: TokenServer, project: str, location: str) -> None:
        super().__init__()
        self.tokens, self.project, self.location = tokens, project, location

    def add_routes(self, app: web.Application) -> None:
        path = f"/v1/projects/{self.project}/locations/{self.location}/publishers/anthropic/models/{{target}}"
        app.router.add_post(path, self.vertex)

    async def vertex(self, request: web.Request) -> web.StreamResponse:
        refusal = _bearer_refusal(request, self.tokens)
        if refusal is not None:
            return refusal
        body = await self.record(request)
        if request.match_info["target"] == "count-tokens:rawPredict":
            return await self._count(body)
        if (
            not isinstance(body, dict)
            or "model" in body
            or body.get("anthropic_version") != "vertex-2023-10-16"
        ):
            return web.json_response(
                self.error_body(
                    400, "anthropic_version: vertex-2023-10-16 is required; model goes in the path"
                ),
                status=400,
            )
        # The model is the path's; the rest of the body is checked as the Messages API checks it.
        model = request.match_info["target"].rpartition(":")[0]
        return await self.respond(request, {**body, "model": model})

    async def _count(self, body: Any) -> web.StreamResponse:
        """Vertex's one count endpoint: the count body with its model, plus anthropic_version."""
        if not isinstance(body, dict) or body.get("anthropic_version") != "vertex-2023-10-16":
            return web.json_response(
                self.error_body(400, "anthropic_version: vertex-2023-10-16 is required"), status=400
            )
        counted = {k: v for k, v in body.items() if k != "anthropic_version"}
        try:
            check_count_request(counted)
        except Invalid as exc:
            return web.json_response(self.error_body(400, str(exc)), status=400)
        return web.json_response({"input_tokens": counted_tokens(counted)})
