"""The routing policy kernel: compile a policy snapshot once, then decide per request in microseconds."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from atp.common.v1 import chat_pb2
from atp.router.v1 import router_pb2
from atp_common import capabilities
from atp_common.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    AtpError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from atp_common.policy.arms import (
    JSON,
    POLICY_NAMES,
    RANKERS,
    STREAMING,
    TOOLS,
    VISION,
    Model,
    Ranking,
    Route,
    rank_static,
)
from atp_common.policy.costaware import epsilon_mix
from atp_common.regions import RegionFilter

__all__ = ["CACHE_POLICY", "DIRECT_POLICY", "POLICY_NAMES", "UNLEARNED_POLICIES", "CompiledPolicy"]

# The policy recorded when a request names a concrete model: no choice was made, so nothing is learned.
DIRECT_POLICY = "direct"
# The policy recorded for a reply answered from the response cache: no model was pulled.
CACHE_POLICY = "cache"
# Decisions that taught nothing about the models (learning and off-policy estimates skip them).
UNLEARNED_POLICIES = frozenset((DIRECT_POLICY, CACHE_POLICY))

# Filter stages, checked in this order. When nothing survives, the furthest stage any candidate reached
# names the error: a model that was allowed and fit the request but is excluded means "try later".
_STAGE_TENANT, _STAGE_REQUEST, _STAGE_EXCLUDED = 0, 1, 2
_STAGE_ERRORS: tuple[type[AtpError], ...] = (PermissionDenied, InvalidArgument, Unavailable)
_TOO_LONG = "context window"

_default_rng = random.Random()


class CompiledPolicy:
    """A policy snapshot digested for fast decisions. Build once per snapshot; `decide` per request.

    Immutable after construction, so one instance can serve concurrent requests on any thread.
    """

    def __init__(self, snapshot: router_pb2.PolicySnapshot):
        self.version = snapshot.version
        self.default_route = snapshot.default_route
        self._models = {spec.name: Model(spec) for spec in snapshot.models}
        self.models: Mapping[str, router_pb2.ModelSpec] = MappingProxyType(
            {name: m.spec for name, m in self._models.items()}
        )
        self._routes = {route.name: Route(route, self._models) for route in snapshot.routes}
        self._tenants: dict[str, tuple[frozenset[str] | None, frozenset[str]]] = {
            t.tenant: (frozenset(t.allowed_models) or None, frozenset(t.denied_models))
            for t in snapshot.tenants
        }
        self._tenant_regions = {t.tenant: tuple(t.regions) for t in snapshot.tenants if t.regions}
        self._exclusions: dict[str, tuple[str, float]] = {}
        for exclusion in snapshot.exclusions:
            until = (
                exclusion.until.seconds + exclusion.until.nanos / 1e9 if exclusion.HasField("until") else 0.0
            )
            self._exclusions[exclusion.model] = (exclusion.reason or "excluded", until or math.inf)

    @classmethod
    def from_snapshot(cls, snapshot: router_pb2.PolicySnapshot) -> CompiledPolicy:
        """Compile a snapshot (once per snapshot version)."""
        return cls(snapshot)

    def semantic_encoder(self, model_or_route: str) -> Any:
        """The semantic encoder of the route a request names, or None (no semantic features there)."""
        route = self._routes.get(model_or_route or self.default_route)
        return route.semantic if route is not None else None

    def tenant_allows(self, tenant: str, model: str) -> bool:
        """Whether the tenant's model lists let it use `model` (a stored reply's, say)."""
        allowed, denied = self._tenants.get(tenant, (None, frozenset()))
        return (allowed is None or model in allowed) and model not in denied

    @property
    def route_names(self) -> tuple[str, ...]:
        """The routes this snapshot defines."""
        return tuple(self._routes)

    def decide(
        self,
        model_or_route: str,
        tenant: str,
        features: chat_pb2.RequestFeatures,
        rng: random.Random | None = None,
    ) -> chat_pb2.Decision:
        """Rank the candidates for one request.

        `model_or_route` is a route, a concrete model (a one-candidate "direct" decision), or empty for the
        default route. Raises NotFound for an unknown name and PermissionDenied, InvalidArgument or
        Unavailable when the hard constraints leave no candidate.
        """
        name = model_or_route or self.default_route
        route = self._routes.get(name)
        if route is None:
            model = self._models.get(name)
            if model is None:
                # Names nothing else: the catalogue differs by tenant, and GET /v1/models lists what the
                # caller may use. The echo is cut short so the error stays small whatever was sent.
                shown = name if len(name) <= 64 else name[:64] + "..."
                raise NotFound(
                    f"unknown model or route {shown!r}; GET /v1/models lists those you may use",
                    param="model",
                )
            regions = self.region_filter(tenant, features)
            survivors, filtered = self._filter(name, (model,), tenant, features, regions)
            ranking = Ranking(survivors, [1.0], 1.0, "named directly")
            return self._decision("", DIRECT_POLICY, ranking, filtered, features, regions)
        regions = self.region_filter(tenant, features)
        survivors, filtered = self._filter(name, route.candidates, tenant, features, regions)
        arms = route.tenant_arms.get(tenant, route.arms) if route.tenant_arms else route.arms
        if len(survivors) == 1:
            ranking = Ranking(survivors, [1.0], 1.0, "the only candidate left")
        else:
            ranking = RANKERS.get(route.kind, rank_static)(
                route, survivors, arms, features, rng or _default_rng
            )
            if route.epsilon > 0.0:
                _mix(ranking, route.epsilon, rng or _default_rng)
        return self._decision(route.name, route.policy, ranking, filtered, features, regions)

    def _filter(
        self,
        name: str,
        candidates: Sequence[Model],
        tenant: str,
        features: chat_pb2.RequestFeatures,
        regions: RegionFilter | None,
    ) -> tuple[list[Model], list[chat_pb2.FilteredCandidate]]:
        # Precomputed features from older callers carry only the four flags: fold them in.
        need = (
            features.required_features
            | (TOOLS if features.needs_tools else 0)
            | (VISION if features.needs_vision else 0)
            | (JSON if features.needs_json else 0)
            | (STREAMING if features.stream else 0)
        )
        prompt, output = features.estimated_prompt_tokens, features.max_output_tokens
        allowed, denied = self._tenants.get(tenant, (None, frozenset()))
        exclusions = self._exclusions
        survivors: list[Model] = []
        filtered: list[chat_pb2.FilteredCandidate] = []
        furthest = -1
        lacking_any = 0
        for model in candidates:
            reason = ""
            stage = _STAGE_TENANT
            if allowed is not None and model.name not in allowed:
                reason = f"not in tenant {tenant!r} allowed_models"
            elif model.name in denied:
                reason = f"in tenant {tenant!r} denied_models"
            elif regions and not any(regions.allows(r) for r in model.regions):
                reason = f"no deployment in regions {regions.describe()}"
            else:
                stage = _STAGE_REQUEST
                lacking = need & ~model.supported
                if lacking:
                    lacking_any |= lacking
                    reason = "lacks " + ", ".join(capabilities.feature_names(lacking))
                elif 0 < model.context_window < (tokens := prompt + min(output, model.max_output)):
                    reason = f"{_TOO_LONG} {model.context_window} < {tokens} tokens needed"
                elif model.name in exclusions:
                    why, until = exclusions[model.name]
                    if time.time() < until:
                        stage = _STAGE_EXCLUDED
                        reason = f"excluded: {why}"
            if reason:
                furthest = max(furthest, stage)
                filtered.append(chat_pb2.FilteredCandidate(model=model.name, reason=reason))
            else:
                survivors.append(model)
        if not survivors:
            raise _refusal(name, filtered, furthest, lacking_any)
        return survivors, filtered

    def region_filter(self, tenant: str, features: chat_pb2.RequestFeatures) -> RegionFilter | None:
        """The tenant's regions narrowed by the request's; None when neither restricts (most requests:
        then no filter object is built and no model is checked)."""
        tenant_regions = self._tenant_regions.get(tenant, ())
        if not tenant_regions and not features.regions:
            return None
        return RegionFilter(tenant_regions, features.regions)

    def _decision(
        self,
        route: str,
        policy: str,
        ranking: Ranking,
        filtered: list[chat_pb2.FilteredCandidate],
        features: chat_pb2.RequestFeatures,
        regions: RegionFilter | None = None,
    ) -> chat_pb2.Decision:
        chosen = ranking.models[0].name
        explanation = f"{policy}: chose {chosen} ({ranking.why}); {len(ranking.models)} ranked"
        if filtered:
            explanation += f", {len(filtered)} filtered"
        if regions:
            explanation += f"; region filter: {regions.describe()}"
        decision = chat_pb2.Decision(
            decision_id=os.urandom(16).hex(),
            route=route,
            policy=policy,
            propensity=ranking.propensity,
            explanation=explanation,
            policy_version=self.version,
            features=features,
        )
        # add() per candidate is cheaper per decision than building RankedCandidate lists first.
        add = decision.candidates.add
        for model, score in zip(ranking.models, ranking.scores, strict=True):
            add(model=model.name, provider=model.provider, score=score)
        if filtered:
            decision.filtered.extend(filtered)
        return decision


def _refusal(
    name: str, filtered: list[chat_pb2.FilteredCandidate], furthest: int, lacking_any: int
) -> AtpError:
    """The error for a request no candidate survived: the furthest stage any candidate reached says which;
    at the request stage, the parameters no survivor could honour, or a prompt too long for every window."""
    details = "; ".join(f"{f.model}: {f.reason}" for f in filtered)
    message = f"no candidate of {name!r} can serve this request ({details})"
    if furthest == _STAGE_REQUEST and lacking_any:
        return InvalidArgument(message, param=_params(lacking_any))
    if furthest == _STAGE_REQUEST and any(f.reason.startswith(_TOO_LONG) for f in filtered):
        return InvalidArgument(message, param="messages", reason=CONTEXT_LENGTH_EXCEEDED)
    return _STAGE_ERRORS[furthest](message)


def _params(bits: int) -> str:
    """The request parameters that asked for the features in `bits`, for the error's param."""
    names = dict.fromkeys(f.param for f in capabilities.FEATURES if bits & f.bit and f.param)
    return ", ".join(names)


def _mix(ranking: Ranking, epsilon: float, rng: random.Random) -> None:
    pick, ranking.propensity = epsilon_mix(len(ranking.models), epsilon, rng)
    if pick:
        ranking.models.insert(0, ranking.models.pop(pick))
        ranking.scores.insert(0, ranking.scores.pop(pick))
        ranking.why = f"epsilon draw ({epsilon:g}); greedy: {ranking.why}"
