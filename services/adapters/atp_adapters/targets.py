"""The models this replica serves: each one's prices, circuit and deployments, built from the configuration."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from atp.common.v1 import chat_pb2
from atp_adapters.circuit_exclusions import CircuitExclusions, ModelCircuit
from atp_adapters.deployments import Breaker, Deployment, DeploymentSet, LocalBreaker
from atp_adapters.limits.backends import Backend
from atp_adapters.pricing import Prices
from atp_adapters.providers import Provider
from atp_adapters.resilience import Circuits, RetryPolicy
from atp_common import config as config_mod
from atp_common.capabilities import model_supported_features
from atp_common.config import AtpConfig
from atp_common.regions import RegionFilter

# The built-in provider cannot fail the way a remote one does: no retries, default breaker settings.
_LOCAL_RETRY = RetryPolicy(max_retries=0)
_LOCAL_CIRCUIT = (5, 30.0)


@dataclass(frozen=True, slots=True)
class Target:
    """Everything needed to call one model, resolved once at start-up: its prices, its deployments, and
    the circuit the router hears about (None for a model with several deployments, each with its own)."""

    model: str
    prices: Prices
    circuit: ModelCircuit | None
    deployments: DeploymentSet


class TargetTable:
    """The Targets in force. A configuration change swaps `current` whole; a request reads it once, so
    it finishes on the settings it started with."""

    __slots__ = ("current",)

    def __init__(self, targets: Mapping[str, Target]) -> None:
        self.current = targets


def build_targets(
    config: AtpConfig,
    providers: Mapping[str, Provider],
    exclusions: CircuitExclusions,
    circuits: Circuits,
    quota: Backend | None = None,
    prefix: str = "atp:",
) -> dict[str, Target]:
    """One Target per configured model: its prices, circuit and deployments (provider clients, retry
    policies, quotas and the strategy that chooses among them)."""
    targets: dict[str, Target] = {}
    for name, model in config.models.items():
        listed = config.deployments_of(name)
        deployments = []
        circuit: ModelCircuit | None = None
        for deployment in listed:
            provider_cfg = config.providers[deployment.provider]
            if isinstance(provider_cfg, config_mod.HttpProvider):
                retry = RetryPolicy.from_config(provider_cfg)
                failures, open_s = provider_cfg.circuit_failures, provider_cfg.circuit_open_s
                wire_api = provider_cfg.wire_api
            else:
                retry, (failures, open_s), wire_api = _LOCAL_RETRY, _LOCAL_CIRCUIT, "local"
            breaker_key = (
                deployment.provider if len(listed) == 1 else f"{deployment.provider}/{deployment.name}"
            )
            breaker = circuits.breaker(breaker_key, name, failures, open_s)
            # A model served from one place keeps the circuit the router hears about; each of several
            # deployments has its own, and the model stays routable while any of them is healthy.
            own: Breaker
            if len(listed) == 1:
                own = circuit = exclusions.circuit(name, breaker)
            else:
                own = LocalBreaker(breaker)
            deployments.append(
                Deployment(
                    name=deployment.name,
                    provider_name=deployment.provider,
                    provider=providers[deployment.provider],
                    provider_model=deployment.provider_model,
                    region=deployment.region,
                    weight=deployment.weight,
                    retry=retry,
                    breaker=own,
                    features=model_supported_features(wire_api, model),
                    adaptive_thinking=model.thinking == "adaptive",
                    max_output_tokens=model.max_output_tokens or 0,
                    rpm=deployment.rpm,
                    tpm=deployment.tpm,
                )
            )
        targets[name] = Target(
            model=name,
            prices=Prices.of(model),
            circuit=circuit,
            deployments=DeploymentSet(
                name, model.strategy, deployments, quota=quota, prefix=f"{prefix}deployment:"
            ),
        )
    return targets


async def plan_calls(
    targets: Mapping[str, Target],
    decision: chat_pb2.Decision,
    regions: RegionFilter | None,
    skipped: list[str],
) -> AsyncGenerator[tuple[Target, Deployment], None]:
    """The (model, deployment) pairs to try, in order: each ranked model's usable deployments as its
    strategy orders them, each taken from its quota when it is tried; why others were passed over goes
    to `skipped`."""
    features = decision.features
    tokens = features.estimated_prompt_tokens + features.max_output_tokens
    for candidate in decision.candidates:
        target = targets.get(candidate.model)
        if target is None:
            # The router's snapshot names a model this replica has no provider for (config skew).
            skipped.append(f"{candidate.model}: not configured here")
            continue
        choices = target.deployments.candidates(features.required_features, regions)
        if not choices:
            skipped.append(f"{candidate.model}: no deployment can serve this request")
        for deployment in choices:
            if await target.deployments.reserve(deployment, tokens):
                yield target, deployment
            else:
                skipped.append(f"{candidate.model} at {deployment.name}: {QUOTA_SPENT}")


QUOTA_SPENT = "quota spent"
