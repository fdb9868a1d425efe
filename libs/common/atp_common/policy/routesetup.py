"""What a route's configuration implies for learning and snapshots: its artifact, context length, objective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from atp.router.v1 import router_pb2
from atp_common.config import RouteConfig
from atp_common.policy._math import beta_prior
from atp_common.policy.artifact import RouterArtifact, learner_prior, route_artifact

# (A, A^-1, b, theta) of a LinUCB arm starting from a trained fit.
ArmStart = tuple[list[float], list[float], list[float], list[float]]
# The quality prior a started arm's Beta part takes: the fit, not the prior, says what the model is worth.
START_QUALITY_PRIOR = 0.5


def start_arm(model: str, start: ArmStart) -> router_pb2.ArmState:
    """The arm a learner starting from `start` exports before its first reward (what the adapters use
    until the router's first snapshot carries learned state)."""
    _, a_inv, b, _ = start
    alpha, beta = beta_prior(START_QUALITY_PRIOR)
    return router_pb2.ArmState(model=model, alpha=alpha, beta=beta, a_inv=a_inv, b=b)


@dataclass(frozen=True, slots=True)
class RouteSetup:
    """A route's artifact (trained, or the default projection for `semantic`), context length and
    objective; routes with neither keep today's behaviour exactly."""

    artifact: RouterArtifact | None
    trained: bool
    dim: int
    known_cost: bool

    def starts(self, candidates: Sequence[str], prior_rows: float) -> dict[str, ArmStart]:
        """Per candidate the artifact knows, the LinUCB state to start from."""
        if self.artifact is None or not self.trained:
            return {}
        out: dict[str, ArmStart] = {}
        for model in candidates:
            prior = learner_prior(self.artifact, model, prior_rows)
            if prior is not None:
                a, a_inv, b = prior
                out[model] = (a, a_inv, b, list(self.artifact.models[model].theta))
        return out

    def fill(self, policy: router_pb2.RoutePolicy) -> None:
        """Set the snapshot fields the kernel needs for this route."""
        policy.feature_dim = self.dim
        policy.known_cost = self.known_cost
        if self.artifact is not None:
            projection = self.artifact.projection_proto()
            if projection is not None:
                policy.semantic.CopyFrom(projection)
            if self.trained:
                policy.artifact_digest = self.artifact.digest()
                policy.artifact_training = self.artifact.training_summary()


def route_setup(route: RouteConfig, base_dim: int) -> RouteSetup:
    """The setup of one configured route (reads its artifact file, cached)."""
    artifact = route_artifact(route.artifact, route.semantic)
    dim = artifact.dim if artifact is not None else base_dim
    objective = route.objective or ("quality" if artifact is not None else "reward")
    return RouteSetup(artifact, bool(route.artifact), dim, objective == "quality")
