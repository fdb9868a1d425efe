"""The ATP configuration file: providers, models, routes and tenants, typed and validated."""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from atp_common.errors import ConfigError

Capability = Literal["tools", "vision", "json", "streaming", "audio", "files", "reasoning", "embeddings"]
PolicyName = Literal["static", "cheapest", "thompson", "ucb", "linucb"]
# `user` calls models and reads its tenant's data; `tenant_admin` also administers its own tenant's keys;
# `operator` administers every tenant.
Role = Literal["user", "tenant_admin", "operator"]
ROLES: tuple[Role, ...] = ("user", "tenant_admin", "operator")
PiiKind = Literal[
    "email", "phone", "card", "iban", "ip", "ssn", "identifier", "person", "location", "organization"
]
PiiDetector = Literal["regex", "ner"]


log = logging.getLogger("atp.config")

# The role name before scoped administration, when an admin key administered every tenant.
LEGACY_ADMIN_ROLE = "admin"
# Keys already warned about (bounded: past the bound a key is still upgraded, just not logged again).
_warned_legacy: set[str] = set()
_MAX_WARNED = 10_000


def upgrade_role(role: str, key: str) -> str:
    """`role` with the deprecated `admin` read as `operator`; the first time per `key` (a key's name and id,
    never the key) a warning says so."""
    if role != LEGACY_ADMIN_ROLE:
        return role
    if key not in _warned_legacy and len(_warned_legacy) < _MAX_WARNED:
        _warned_legacy.add(key)
        log.warning(
            "API key %s has the deprecated role 'admin': it is read as 'operator' (administers every "
            "tenant); set role 'operator', or 'tenant_admin' to administer only its own tenant",
            key,
        )
    return "operator"


class _Strict(BaseModel):
    # Unknown keys are typos far more often than intent: refuse them at start-up.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalProvider(_Strict):
    """The built-in deterministic provider: echoes the last user message, so the suite runs offline."""

    type: Literal["local"] = "local"
    latency_ms: float = Field(0.0, ge=0, description="Delay before the first token.")
    tokens_per_second: float = Field(0.0, ge=0, description="Streaming rate; 0 means as fast as possible.")
    reply_prefix: str = "echo: "


class HttpProvider(_Strict):
    """A provider reached over HTTP. `openai` covers every OpenAI-compatible server."""

    type: Literal["openai", "azure", "anthropic", "gemini", "bedrock", "vertex"]
    # Optional for bedrock (from `region`) and vertex (from `location`), required otherwise.
    base_url: str = ""
    # A secret reference: `env:NAME`, `file:/path` or `vault:path#key`; empty for servers without auth.
    api_key: str = ""
    api_version: str = ""
    # OpenAI-compatible servers: the output-token limit's body field (unset: OpenAI's own name, see README).
    token_limit_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(5.0, gt=0)
    first_token_timeout_s: float = Field(60.0, gt=0)
    idle_timeout_s: float = Field(30.0, gt=0)
    total_timeout_s: float = Field(600.0, gt=0)
    max_connections: int = Field(256, ge=1)
    max_retries: int = Field(2, ge=0)
    retry_base_delay_s: float = Field(0.2, ge=0)
    retry_max_delay_s: float = Field(8.0, ge=0)
    circuit_failures: int = Field(5, ge=1, description="Consecutive failures that open the circuit.")
    circuit_open_s: float = Field(30.0, gt=0, description="How long an open circuit waits before a probe.")
    # Gemini only: images given by http(s) URL are fetched and sent inline, each within these bounds.
    # Private and loopback addresses are refused unless allowed (a client's URL must not reach inside).
    image_fetch_max_bytes: int = Field(8 << 20, gt=0)
    image_fetch_timeout_s: float = Field(10.0, gt=0)
    image_fetch_private_hosts: bool = False
    # Bedrock: the AWS region and, optionally, a named profile of the shared config (else the standard
    # credential chain: environment, web identity / IRSA, container or instance role).
    region: str = ""
    aws_profile: str = ""
    # Vertex AI: project, location and whose models this entry serves (Gemini or Anthropic's);
    # credentials from a service-account file, else the application default credentials.
    project: str = ""
    location: str = ""
    publisher: Literal["google", "anthropic"] = "google"
    credentials_file: str = ""
    # Azure: `api_key` (the api-key header) or `entra` (an Entra ID bearer token from azure-identity).
    auth: Literal["api_key", "entra"] = "api_key"
    entra_credential: Literal["client_secret", "managed_identity", "workload_identity", "default"] = "default"
    entra_tenant_id: str = ""
    entra_client_id: str = ""
    # A secret reference, like api_key; client_secret credentials only.
    entra_client_secret: str = ""

    @model_validator(mode="after")
    def _endpoint_known(self) -> HttpProvider:
        if self.type == "bedrock" and not self.region:
            raise ValueError("a bedrock provider needs its region")
        if self.type == "vertex" and not (self.project and self.location):
            raise ValueError("a vertex provider needs its project and location")
        if self.type not in ("bedrock", "vertex") and not self.base_url:
            raise ValueError(f"a {self.type} provider needs its base_url")
        if self.auth == "entra" and self.type != "azure":
            raise ValueError("auth: entra is for azure providers")
        return self

    @property
    def token_limit(self) -> str | None:
        """The token limit's field: as set, else `max_completion_tokens` at OpenAI; None: the client's."""
        openai = self.type == "openai" and urlsplit(self.base_url).hostname == "api.openai.com"
        return self.token_limit_field or ("max_completion_tokens" if openai else None)

    @property
    def wire_api(self) -> str:
        """The API this provider speaks, which decides what it can honour (atp_common.capabilities)."""
        if self.type == "vertex":
            return "anthropic" if self.publisher == "anthropic" else "gemini"
        return self.type


ProviderConfig = Annotated[LocalProvider | HttpProvider, Field(discriminator="type")]


DeploymentStrategy = Literal["weighted", "least_busy", "latency", "quota_aware"]


class DeploymentConfig(_Strict):
    """One place a model runs: a provider, the model's name there, a region and a quota of its own."""

    provider: str
    provider_model: str = ""
    # Defaults to the provider's region.
    region: str = ""
    name: str = ""
    weight: float = Field(1.0, gt=0)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    tags: list[str] = Field(default_factory=list)


class ModelConfig(_Strict):
    """A model with its list prices in USD per million tokens, offered through one provider (`provider`)
    or several deployments (`deployments`, chosen per request by `strategy`)."""

    provider: str = ""
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    strategy: DeploymentStrategy = "weighted"
    provider_model: str = ""
    input_usd_per_mtok: float = Field(0.0, ge=0)
    output_usd_per_mtok: float = Field(0.0, ge=0)
    cached_input_usd_per_mtok: float | None = Field(None, ge=0)
    # Prompt tokens written to the provider's cache (Anthropic bills them above the input price).
    cache_write_usd_per_mtok: float | None = Field(None, ge=0)
    reasoning_usd_per_mtok: float | None = Field(None, ge=0)
    # Prompt plus output tokens the model takes. Unset, routing does not guess: the provider's own refusal
    # comes back as context_length_exceeded, and a route fails over to its next candidate.
    context_window: int | None = Field(None, gt=0)
    # The model's most output tokens: a larger max_tokens goes as this (providers refuse it otherwise).
    max_output_tokens: int | None = Field(None, gt=0)
    capabilities: list[Capability] = Field(default_factory=lambda: list[Capability](["streaming"]))
    quality_prior: float = Field(0.5, ge=0, le=1)
    # How a model on Anthropic's API takes a request to think: `budget` (thinking enabled with budget_tokens)
    # or `adaptive` (Claude's newest models: an effort or a budget goes as adaptive thinking with an effort).
    thinking: Literal["budget", "adaptive"] = "budget"
    # What the model refuses that its provider type's API takes (README, `sampling` and `stop_sequences`).
    sampling: Literal["any", "default", "temperature_or_top_p"] = "any"
    stop_sequences: bool = True

    @model_validator(mode="after")
    def _one_way_to_reach_it(self) -> ModelConfig:
        if bool(self.provider) == bool(self.deployments):
            raise ValueError("a model names either its provider or its deployments")
        return self


class SemanticCacheConfig(_Strict):
    """Serve the stored reply of the nearest earlier question (cosine of the last user turn's embedding)."""

    threshold: float = Field(0.95, ge=0.5, le=1.0)


class CacheConfig(_Strict):
    """A route's response cache: exact-match replies kept `ttl_s` seconds."""

    ttl_s: float = Field(300.0, gt=0, le=30 * 86400)
    # Store replies of sampled requests too (temperature above 0, or left to the provider's default):
    # only for routes whose callers accept the same answer twice.
    sampled: bool = False
    # Off by default: a paraphrase of a stored question gets its reply (everything else must match).
    semantic: SemanticCacheConfig | None = None


class RouteConfig(_Strict):
    """A named route: the candidate models and the policy that picks among them."""

    candidates: list[str] = Field(min_length=1)
    policy: PolicyName = "static"
    # Static policy only: traffic weights per candidate (canaries); empty means strict order.
    weights: list[float] = Field(default_factory=list)
    cost_weight: float = Field(0.0, ge=0, description="Reward penalty per USD.")
    latency_weight: float = Field(0.0, ge=0, description="Reward penalty per second.")
    quality_floor: float = Field(0.0, ge=0, le=1)
    exploration: float = Field(1.0, ge=0)
    per_tenant: bool = False
    # A trained router (atp-train's artifact file): its projection and per-model weights are the prior the
    # route's LinUCB starts from and keeps learning from.
    artifact: str | None = None
    # Semantic features without an artifact: the default projection shipped with ATP, learning from zero.
    semantic: bool = False
    # `quality`: the regression learns quality and the decision subtracts cost_weight * the known list
    # price; `reward`: it learns quality - cost_weight * cost from rewards. Default: quality with an
    # artifact or semantic features, reward otherwise.
    objective: Literal["reward", "quality"] | None = None
    # How many observations the artifact's prior weighs, against the route's own rewards.
    prior_rows: float = Field(200.0, gt=0)
    # UCB and LinUCB: share of decisions that go to a uniformly drawn candidate (true propensities).
    epsilon: float = Field(0.0, ge=0, le=1)
    # Redact PII from the messages forwarded to the provider (off: requests are forwarded as sent).
    redact_pii_upstream: bool = False
    cache: CacheConfig | None = None
    # Budgets: the output tokens reserved for a request on this route that does not set max_tokens (the
    # adapters' default_output_tokens otherwise), so a small budget is not refused by one estimate.
    max_reservation_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _weights_match(self) -> RouteConfig:
        if self.weights and len(self.weights) != len(self.candidates):
            raise ValueError("weights must have one entry per candidate")
        return self


# The rate limits an API key may carry on top of its tenant's.
KEY_LIMIT_FIELDS = (
    "requests_per_second",
    "requests_per_minute",
    "requests_per_day",
    "tokens_per_second",
    "tokens_per_minute",
    "tokens_per_day",
)
# An API key's own budgets (USD per UTC day / month), checked with its tenant's in the same admission.
KEY_BUDGET_FIELDS = ("daily_budget_usd", "monthly_budget_usd")
# Everything a key's `limits` may hold: rate limits (integers) and budgets (USD).
KEY_POLICY_FIELDS = KEY_LIMIT_FIELDS + KEY_BUDGET_FIELDS


class RateLimits(_Strict):
    """Requests and tokens per second, minute and day (KEY_LIMIT_FIELDS); None: no such limit."""

    requests_per_second: int | None = Field(None, ge=1)
    requests_per_minute: int | None = Field(None, ge=1)
    requests_per_day: int | None = Field(None, ge=1)
    tokens_per_second: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)


class ApiKeyConfig(RateLimits):
    """An API key, stored only as its SHA-256 digest (`sha256:<hex>`), with optional limits of its own.

    A key's limits hold in addition to its tenant's: a request is admitted only when both allow it.
    """

    hash: str
    role: Role = "user"
    name: str = ""
    daily_budget_usd: float | None = Field(None, gt=0)
    monthly_budget_usd: float | None = Field(None, gt=0)
    # Narrow the tenant's model lists for this key (never widen them).
    allowed_models: list[str] = Field(default_factory=list)
    denied_models: list[str] = Field(default_factory=list)
    # After this instant the key is refused like a revoked one.
    expires_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_role(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("role") == LEGACY_ADMIN_ROLE:
            digest = str(data.get("hash", "")).removeprefix("sha256:")
            data = {
                **data,
                "role": upgrade_role(LEGACY_ADMIN_ROLE, f"{data.get('name', '')!r} (cfg_{digest[:16]})"),
            }
        return data

    @property
    def limits(self) -> dict[str, float]:
        """The limits and budgets this key sets (field name to value), empty when it has none."""
        return {f: v for f in KEY_POLICY_FIELDS if (v := getattr(self, f)) is not None}

    @property
    def expires_ts(self) -> float | None:
        """`expires_at` as a Unix time (a naive datetime is UTC)."""
        if self.expires_at is None:
            return None
        at = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=UTC)
        return at.timestamp()

    @field_validator("hash")
    @classmethod
    def _is_digest(cls, value: str) -> str:
        digest = value.removeprefix("sha256:")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("hash must be 'sha256:' followed by 64 lowercase hex digits")
        return "sha256:" + digest


class PiiSettings(_Strict):
    """A tenant's own PII settings: which detector and which kinds (None: the privacy section's)."""

    detector: PiiDetector = "regex"
    kinds: list[PiiKind] | None = None


class TenantConfig(RateLimits):
    """A tenant: its keys, its rate limits and budgets, and what it may use."""

    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    allowed_models: list[str] = Field(default_factory=list)
    denied_models: list[str] = Field(default_factory=list)
    daily_budget_usd: float | None = Field(None, ge=0)
    monthly_budget_usd: float | None = Field(None, ge=0)
    # Each end user's own budgets within the tenant (the request's `user`, x-atp-user or Anthropic
    # metadata.user_id), checked with the tenant's; requests without an end user are not held by them.
    user_daily_budget_usd: float | None = Field(None, gt=0)
    user_monthly_budget_usd: float | None = Field(None, gt=0)
    store_prompts: bool = False
    # Redact PII before anything of this tenant is stored; None follows `privacy.redact_pii`.
    redact_pii: bool | None = None
    pii: PiiSettings | None = None
    # Where this tenant's requests may be served (`eu-*`, `westeurope`); empty: anywhere. A request may
    # narrow it further with the x-atp-region header, never widen it.
    regions: list[str] = Field(default_factory=list)


class PrivacyConfig(_Strict):
    """What is redacted before storage (stored prompts, feedback comments), for tenants that do not say."""

    redact_pii: bool = False
    kinds: list[PiiKind] = Field(
        default_factory=lambda: list[PiiKind](["email", "phone", "card", "iban", "ip", "ssn"])
    )
    # `regex`: the checksummed patterns only (microseconds per KB). `ner`: also person names, locations
    # (and street addresses) and organisations, found by a named-entity model (tens of ms per KB, run off
    # the event loop); its kinds take effect only with this detector.
    detector: PiiDetector = "regex"


class AtpConfig(_Strict):
    """The whole configuration. Each service reads the part it needs."""

    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    routes: dict[str, RouteConfig]
    default_route: str = "auto"
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    @model_validator(mode="after")
    def _references_resolve(self) -> AtpConfig:
        for name, model in self.models.items():
            for provider in [model.provider] if model.provider else [d.provider for d in model.deployments]:
                if provider not in self.providers:
                    raise ValueError(f"model {name!r} names unknown provider {provider!r}")
            names = [d.name for d in self.deployments_of(name)]
            if len(set(names)) != len(names):
                raise ValueError(f"model {name!r} has two deployments named alike; give them names")
        for name, route in self.routes.items():
            if name in self.models:
                raise ValueError(f"route {name!r} has the same name as a model")
            for candidate in route.candidates:
                if candidate not in self.models:
                    raise ValueError(f"route {name!r} names unknown model {candidate!r}")
        if self.default_route not in self.routes:
            raise ValueError(f"default_route {self.default_route!r} is not a route")
        return self

    def digest(self) -> str:
        """A short stable digest of the configuration, to tell versions apart."""
        blob = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()[:16]

    def provider_model(self, model: str) -> str:
        """The model's name at its provider."""
        return self.models[model].provider_model or model

    def deployments_of(self, model: str) -> list[DeploymentConfig]:
        """The model's deployments, names and regions filled in (a model with only `provider` has one)."""
        spec = self.models[model]
        listed = spec.deployments or [
            DeploymentConfig(provider=spec.provider, provider_model=spec.provider_model)
        ]
        out = []
        for deployment in listed:
            provider = self.providers[deployment.provider]
            region = deployment.region or (provider.region if isinstance(provider, HttpProvider) else "")
            provider_model = deployment.provider_model or spec.provider_model or model
            name = deployment.name or (
                deployment.provider if len(listed) == 1 else f"{deployment.provider}/{provider_model}"
            )
            out.append(
                deployment.model_copy(
                    update={"region": region, "provider_model": provider_model, "name": name}
                )
            )
        return out

    def primary_provider(self, model: str) -> str:
        """The provider of the model's first deployment (what single-provider views report)."""
        spec = self.models[model]
        return spec.provider or spec.deployments[0].provider


def hash_api_key(key: str) -> str:
    """The stored form of an API key."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


LOCAL_TENANT = "local"
# The environment variable that supplies the local tenant's key when no configuration file is given.
API_KEY_ENV = "ATP_API_KEY"


def builtin_config(local_api_key: str | None = None) -> AtpConfig:
    """The embedded default: two local echo models behind the `auto` route, a local embedding model, and
    one local tenant."""
    key = local_api_key if local_api_key is not None else os.environ.get(API_KEY_ENV, "")
    tenants: dict[str, Any] = {}
    if key:
        tenants[LOCAL_TENANT] = {
            "api_keys": [{"hash": hash_api_key(key), "role": "operator", "name": "local"}]
        }
    return AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": {
                "local-small": {
                    "provider": "local",
                    "provider_model": "echo-small",
                    "input_usd_per_mtok": 0.10,
                    "output_usd_per_mtok": 0.40,
                    "context_window": 32768,
                    "capabilities": ["streaming", "json", "tools", "reasoning"],
                    "quality_prior": 0.6,
                },
                "local-large": {
                    "provider": "local",
                    "provider_model": "echo-large",
                    "input_usd_per_mtok": 2.50,
                    "output_usd_per_mtok": 10.00,
                    "context_window": 131072,
                    "capabilities": ["streaming", "json", "tools", "vision", "audio", "files", "reasoning"],
                    "quality_prior": 0.8,
                },
                "local-embed": {
                    "provider": "local",
                    "provider_model": "echo-embed",
                    "input_usd_per_mtok": 0.02,
                    "context_window": 8192,
                    "capabilities": ["embeddings"],
                },
            },
            "routes": {"auto": {"candidates": ["local-small", "local-large"], "policy": "static"}},
            "default_route": "auto",
            "tenants": tenants,
        }
    )


def load_config(path: str | Path | None, local_api_key: str | None = None) -> AtpConfig:
    """Load the YAML file at `path`, or the built-in default when `path` is empty."""
    if not path:
        return builtin_config(local_api_key)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    try:
        return AtpConfig.model_validate(raw or {})
    except ValueError as exc:
        raise ConfigError(f"invalid configuration {path}: {exc}") from exc
