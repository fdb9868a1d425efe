"""Build a PolicySnapshot from the configuration, learned arms and current exclusions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from google.protobuf.timestamp_pb2 import Timestamp

from atp.router.v1 import router_pb2
from atp_common.capabilities import model_supported_features
from atp_common.config import AtpConfig, HttpProvider
from atp_common.policy.features import FEATURE_DIM
from atp_common.policy.routesetup import RouteSetup, route_setup, start_arm


class RouteArms(NamedTuple):
    """One route's exported learning state (the router's learner exports it), as snapshot_from_config
    takes it."""

    arms: list[router_pb2.ArmState]
    tenant_arms: list[router_pb2.TenantArms]


POLICY_KINDS: Mapping[str, router_pb2.PolicyKind] = {
    "static": router_pb2.POLICY_KIND_STATIC,
    "cheapest": router_pb2.POLICY_KIND_CHEAPEST,
    "thompson": router_pb2.POLICY_KIND_THOMPSON,
    "ucb": router_pb2.POLICY_KIND_UCB,
    "linucb": router_pb2.POLICY_KIND_LINUCB,
}


def model_features(config: AtpConfig, model: str) -> int:
    """What a model can honour: the union over its deployments (the adapters then pick one that can)."""
    spec = config.models[model]
    bits = 0
    for deployment in config.deployments_of(model):
        provider = config.providers[deployment.provider]
        wire_api = provider.wire_api if isinstance(provider, HttpProvider) else provider.type
        bits |= model_supported_features(wire_api, spec)
    return bits


def model_specs(config: AtpConfig) -> list[router_pb2.ModelSpec]:
    """Every configured model as routing sees it, in configuration order."""
    specs = []
    for name, model in config.models.items():
        caps = set(model.capabilities)
        specs.append(
            router_pb2.ModelSpec(
                name=name,
                provider=config.primary_provider(name),
                regions=sorted({d.region for d in config.deployments_of(name)}),
                provider_model=config.provider_model(name),
                input_usd_per_mtok=model.input_usd_per_mtok,
                output_usd_per_mtok=model.output_usd_per_mtok,
                # Unpriced cached input is billed as plain input, reasoning as output: never under-charge.
                cached_input_usd_per_mtok=(
                    model.cached_input_usd_per_mtok
                    if model.cached_input_usd_per_mtok is not None
                    else model.input_usd_per_mtok
                ),
                reasoning_usd_per_mtok=(
                    model.reasoning_usd_per_mtok
                    if model.reasoning_usd_per_mtok is not None
                    else model.output_usd_per_mtok
                ),
                context_window=model.context_window or 0,
                max_output_tokens=model.max_output_tokens or 0,
                supports_tools="tools" in caps,
                supports_vision="vision" in caps,
                supports_json="json" in caps,
                supports_streaming="streaming" in caps,
                quality_prior=model.quality_prior,
                supported_features=model_features(config, name),
            )
        )
    return specs


def _start_arms(setup: RouteSetup, candidates: list[str], prior_rows: float) -> list[router_pb2.ArmState]:
    return [start_arm(model, start) for model, start in setup.starts(candidates, prior_rows).items()]


def snapshot_from_config(
    config: AtpConfig,
    version: int,
    arms: Mapping[str, RouteArms] | None = None,
    exclusions: Iterable[router_pb2.Exclusion] = (),
    *,
    generated_at: Timestamp | None = None,
) -> router_pb2.PolicySnapshot:
    """The snapshot for `config` at `version`, with learned `arms` per route (the router's learner exports them).

    Tenant arms are included only for routes configured `per_tenant`. Without arms every learning policy
    starts from the models' quality priors.
    """
    arms = arms or {}
    routes = []
    for name, route in config.routes.items():
        learned = arms.get(name)
        routes.append(
            router_pb2.RoutePolicy(
                name=name,
                kind=POLICY_KINDS[route.policy],
                candidates=route.candidates,
                static_weights=route.weights,
                weights=router_pb2.RewardWeights(
                    cost_weight=route.cost_weight, latency_weight=route.latency_weight
                ),
                quality_floor=route.quality_floor,
                exploration=route.exploration,
                arms=learned.arms if learned else (),
                tenant_arms=learned.tenant_arms if learned and route.per_tenant else (),
                feature_dim=FEATURE_DIM,
                epsilon=route.epsilon,
            )
        )
        setup = route_setup(route, FEATURE_DIM)
        setup.fill(routes[-1])
        if not learned and setup.trained:
            # No learner state yet: the arms start from the artifact's fit, as the learner will.
            routes[-1].arms.extend(_start_arms(setup, route.candidates, route.prior_rows))
    tenants = [
        router_pb2.TenantPolicy(
            tenant=name, allowed_models=t.allowed_models, denied_models=t.denied_models, regions=t.regions
        )
        for name, t in config.tenants.items()
        if t.allowed_models or t.denied_models or t.regions
    ]
    if generated_at is None:
        generated_at = Timestamp()
        generated_at.GetCurrentTime()
    return router_pb2.PolicySnapshot(
        version=version,
        generated_at=generated_at,
        config_digest=config.digest(),
        models=model_specs(config),
        routes=routes,
        tenants=tenants,
        exclusions=list(exclusions),
        default_route=config.default_route,
    )
