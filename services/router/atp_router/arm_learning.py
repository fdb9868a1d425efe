"""Learning-state math for the router: reward events in, deterministic ArmState protos out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from atp.observer.v1 import observer_pb2
from atp.router.v1 import router_pb2
from atp_common.config import AtpConfig
from atp_common.policy._math import RIDGE, beta_prior, invert, mat_vec
from atp_common.policy.features import FEATURE_DIM
from atp_common.policy.kernel import UNLEARNED_POLICIES
from atp_common.policy.routesetup import ArmStart, route_setup
from atp_common.policy.snapshot import RouteArms

# How many pseudo-pulls of the global state a tenant's arm starts from (its prior): enough that a new
# tenant routes like everyone else, few enough that a handful of its own rewards moves it.
TENANT_PRIOR_PULLS = 10.0
# A tenant's LinUCB ridge: its regression is pulled toward the global coefficients with this weight.
TENANT_RIDGE = 5.0


class ArmLearner:
    """Sufficient statistics of one arm, updated in place by reward events.

    With decay gamma < 1 every statistic is a discounted sum: an observation made k route steps ago
    weighs gamma**k. Decay is applied lazily (on this arm's next update, or on a copy at export), which is
    exact because discounting composes multiplicatively, and keeps an update O(d^2).

    The LinUCB part keeps A = reg * I + sum w x x^T, its inverse (rank-one Sherman-Morrison updates) and
    b = reg * prior + sum w r x. Decay scales A, b and reg together (a_inv by 1/f); when reg falls below
    half the ridge, the ridge is topped up and A inverted afresh, so a_inv stays bounded.
    """

    __slots__ = (
        "a",
        "a_inv",
        "alpha0",
        "b",
        "beta0",
        "cost_sum",
        "dim",
        "failure_evidence",
        "latency_sum",
        "model",
        "prior_center",
        "pulls",
        "reg",
        "reward_sq_sum",
        "reward_sum",
        "ridge",
        "step",
        "success_evidence",
    )

    def __init__(
        self,
        model: str,
        quality_prior: float,
        dim: int = FEATURE_DIM,
        ridge: float = RIDGE,
        contextual_prior: bool = True,
        start: ArmStart | None = None,
    ):
        self.model = model
        self.dim = dim
        self.alpha0, self.beta0 = beta_prior(quality_prior)
        self.pulls = 0.0
        self.reward_sum = 0.0
        self.reward_sq_sum = 0.0
        self.success_evidence = 0.0
        self.failure_evidence = 0.0
        self.cost_sum = 0.0
        self.latency_sum = 0.0
        self.ridge = ridge
        self.reg = ridge
        # The regression's prior: predict the quality prior through the bias feature (index 0).
        self.prior_center = [0.0] * dim
        if dim and contextual_prior:
            self.prior_center[0] = quality_prior
        self.a = [ridge if i == j else 0.0 for i in range(dim) for j in range(dim)]
        self.a_inv = [1.0 / ridge if i == j else 0.0 for i in range(dim) for j in range(dim)]
        self.b = [ridge * c for c in self.prior_center]
        if start is not None:
            # A trained artifact's fit as the prior: its coefficients are where decay tops the ridge back to.
            self.a, self.a_inv, self.b, self.prior_center = (list(v) for v in start)
        self.step = 0

    def advance(self, step: int, gamma: float) -> None:
        """Discount everything to route step `step` (a no-op without decay)."""
        if gamma >= 1.0 or step == self.step:
            self.step = step
            return
        f = gamma ** (step - self.step)
        self.step = step
        self.pulls *= f
        self.reward_sum *= f
        self.reward_sq_sum *= f
        self.success_evidence *= f
        self.failure_evidence *= f
        self.cost_sum *= f
        self.latency_sum *= f
        self.a, self.a_inv, self.b, self.reg = self._decayed_regression(f)

    def _decayed_regression(self, f: float) -> tuple[list[float], list[float], list[float], float]:
        dim = self.dim
        reg = self.reg * f
        a = [v * f for v in self.a]
        b = [v * f for v in self.b]
        if reg >= 0.5 * self.ridge:
            return a, [v / f for v in self.a_inv], b, reg
        top_up = self.ridge - reg
        for i in range(dim):
            a[i * dim + i] += top_up
            b[i] += top_up * self.prior_center[i]
        return a, invert(a, dim), b, self.ridge

    def observe(
        self,
        reward: float,
        quality: float,
        cost_usd: float,
        latency_ms: float,
        x: Sequence[float] | None,
        target: float | None = None,
    ) -> None:
        """Count one new outcome. `x` None skips the contextual part (an event without features); the
        regression learns `target` (quality, for routes that price requests at their known cost) or the
        reward."""
        quality = min(max(quality, 0.0), 1.0)
        self.pulls += 1.0
        self.reward_sum += reward
        self.reward_sq_sum += reward * reward
        self.success_evidence += quality
        self.failure_evidence += 1.0 - quality
        self.cost_sum += cost_usd
        self.latency_sum += latency_ms
        if x is not None:
            self._add_outer(x)
            learned = reward if target is None else target
            b = self.b
            for i in range(self.dim):
                b[i] += learned * x[i]

    def correct(
        self,
        reward: float,
        quality: float,
        previous_reward: float,
        previous_quality: float,
        x: Sequence[float] | None,
        learns_quality: bool = False,
    ) -> None:
        """Replace an earlier outcome's reward and quality (late feedback); the pull is not counted again.

        Under decay the replacement is applied at full weight, a small approximation that keeps the learner
        from remembering every decision.
        """
        quality = min(max(quality, 0.0), 1.0)
        previous_quality = min(max(previous_quality, 0.0), 1.0)
        self.reward_sum += reward - previous_reward
        self.reward_sq_sum = max(
            self.reward_sq_sum + reward * reward - previous_reward * previous_reward, 0.0
        )
        self.success_evidence = max(self.success_evidence + quality - previous_quality, 0.0)
        self.failure_evidence = max(self.failure_evidence + previous_quality - quality, 0.0)
        if x is not None:
            delta = quality - previous_quality if learns_quality else reward - previous_reward
            b = self.b
            for i in range(self.dim):
                b[i] += delta * x[i]

    def _add_outer(self, x: Sequence[float]) -> None:
        dim = self.dim
        a, a_inv = self.a, self.a_inv
        # Sherman-Morrison: (A + x x^T)^-1 = A^-1 - (A^-1 x)(A^-1 x)^T / (1 + x^T A^-1 x); A^-1 is symmetric.
        ax = [sum(a_inv[i * dim + j] * x[j] for j in range(dim)) for i in range(dim)]
        denominator = 1.0 + sum(ax[i] * x[i] for i in range(dim))
        for i in range(dim):
            scaled = ax[i] / denominator
            xi = x[i]
            row = i * dim
            for j in range(dim):
                a_inv[row + j] -= scaled * ax[j]
                a[row + j] += xi * x[j]

    def load_stats(self, stats: observer_pb2.ArmStats) -> None:
        """Start from the observer's aggregates (a cold router); the contextual part starts from the prior."""
        self.pulls = stats.pulls
        self.reward_sum = stats.reward_sum
        self.reward_sq_sum = stats.reward_sq_sum
        self.success_evidence = min(max(stats.quality_sum, 0.0), stats.pulls)
        self.failure_evidence = max(stats.pulls - self.success_evidence, 0.0)
        self.cost_sum = stats.cost_sum
        self.latency_sum = stats.latency_sum

    def theta(self, step: int, gamma: float) -> list[float]:
        """The regression coefficients a_inv @ b at route step `step`."""
        _, a_inv, b, _ = self._at(step, gamma)
        return mat_vec(a_inv, b, self.dim)

    def _at(self, step: int, gamma: float) -> tuple[float, list[float], list[float], float]:
        if gamma >= 1.0 or step == self.step:
            return 1.0, self.a_inv, self.b, self.reg
        f = gamma ** (step - self.step)
        _, a_inv, b, reg = self._decayed_regression(f)
        return f, a_inv, b, reg

    def to_proto(
        self,
        step: int,
        gamma: float,
        prior: ArmLearner | None = None,
        prior_theta: Sequence[float] | None = None,
    ) -> router_pb2.ArmState:
        """The arm's state at route step `step` (decayed on a copy: exporting never changes the learner).

        With `prior` (a tenant's arm over the global one), the global counts join as at most
        TENANT_PRIOR_PULLS pseudo-pulls, and the regression is centred on the global coefficients.
        """
        f, a_inv, b, reg = self._at(step, gamma)
        pulls = self.pulls * f
        sums = [
            self.reward_sum * f,
            self.reward_sq_sum * f,
            self.success_evidence * f,
            self.failure_evidence * f,
            self.cost_sum * f,
            self.latency_sum * f,
        ]
        if prior is not None:
            pf = gamma ** (step - prior.step) if gamma < 1.0 else 1.0
            prior_pulls = prior.pulls * pf
            weight = min(1.0, TENANT_PRIOR_PULLS / prior_pulls) * pf if prior_pulls > 0 else 0.0
            pulls += prior.pulls * weight
            prior_sums = (
                prior.reward_sum,
                prior.reward_sq_sum,
                prior.success_evidence,
                prior.failure_evidence,
                prior.cost_sum,
                prior.latency_sum,
            )
            sums = [s + p * weight for s, p in zip(sums, prior_sums, strict=True)]
            if prior_theta is not None:
                b = [v + reg * t for v, t in zip(b, prior_theta, strict=True)]
        reward_sum, reward_sq_sum, success, failure, cost_sum, latency_sum = sums
        return router_pb2.ArmState(
            model=self.model,
            pulls=pulls,
            reward_sum=reward_sum,
            reward_sq_sum=reward_sq_sum,
            alpha=self.alpha0 + success,
            beta=self.beta0 + failure,
            a_inv=a_inv,
            b=b,
            mean_cost_usd=cost_sum / pulls if pulls > 0 else 0.0,
            mean_latency_ms=latency_sum / pulls if pulls > 0 else 0.0,
        )


class RouteLearner:
    """One route's learning state: global arms, and per-tenant arms when the route learns per tenant.

    The clock is the count of new (non-correction) reward events of the route; decay is per clock tick.
    Feed every replica the same events in the same order and their exports are byte-identical.
    """

    def __init__(
        self,
        route: str,
        candidates: Mapping[str, float],
        *,
        per_tenant: bool = False,
        decay: float = 1.0,
        dim: int = FEATURE_DIM,
        learns_quality: bool = False,
        starts: Mapping[str, ArmStart] | None = None,
    ):
        """`candidates` maps each candidate model to its quality prior; `decay` is gamma in (0, 1];
        `learns_quality`: the regression learns quality (the kernel prices each request); `starts`: per
        model, a trained artifact's (A, A^-1, b, theta) to start from."""
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.route = route
        self.per_tenant = per_tenant
        self.decay = decay
        self.dim = dim
        self.learns_quality = learns_quality
        self.step = 0
        self._priors = dict(candidates)
        starts = starts or {}
        self._arms = {m: ArmLearner(m, p, dim, start=starts.get(m)) for m, p in self._priors.items()}
        self._tenants: dict[str, dict[str, ArmLearner]] = {}

    def _vector(self, features: Sequence[float]) -> list[float] | None:
        if not features:
            return None
        x = [float(v) for v in features[: self.dim]]
        if len(x) < self.dim:
            x.extend([0.0] * (self.dim - len(x)))
        return x

    def _tenant_arm(self, tenant: str, model: str) -> ArmLearner:
        arms = self._tenants.setdefault(tenant, {})
        arm = arms.get(model)
        if arm is None:
            # Centred on zero: the export centres it on the global coefficients instead.
            arm = arms[model] = ArmLearner(model, self._priors[model], self.dim, TENANT_RIDGE, False)
            arm.step = self.step
        return arm

    def apply(self, event: observer_pb2.RewardEvent) -> bool:
        """Apply one reward event; False when it is not this route's to learn from."""
        if event.route != self.route or event.model not in self._arms or event.policy in UNLEARNED_POLICIES:
            return False
        x = self._vector(event.features)
        targets = [self._arms[event.model]]
        if self.per_tenant and event.tenant:
            targets.append(self._tenant_arm(event.tenant, event.model))
        if not event.correction:
            self.step += 1
        for arm in targets:
            arm.advance(self.step, self.decay)
            if event.correction:
                arm.correct(
                    event.reward,
                    event.quality,
                    event.previous_reward,
                    event.previous_quality,
                    x,
                    self.learns_quality,
                )
            else:
                target = min(max(event.quality, 0.0), 1.0) if self.learns_quality else None
                arm.observe(event.reward, event.quality, event.cost_usd, event.latency_ms, x, target)
        return True

    def load_stats(self, stats: observer_pb2.ArmStats) -> bool:
        """Seed one arm from the observer's aggregates; False when it is not this route's."""
        if stats.route != self.route or stats.model not in self._arms:
            return False
        if stats.tenant:
            if not self.per_tenant:
                return False
            self._tenant_arm(stats.tenant, stats.model).load_stats(stats)
        else:
            self._arms[stats.model].load_stats(stats)
        return True

    def export(self) -> RouteArms:
        """The route's ArmState protos at the current clock, tenants sorted by name."""
        step, gamma = self.step, self.decay
        arms = [arm.to_proto(step, gamma) for arm in self._arms.values()]
        tenant_arms = []
        if self._tenants:
            thetas = {m: arm.theta(step, gamma) for m, arm in self._arms.items()}
            for tenant in sorted(self._tenants):
                states = [
                    arm.to_proto(step, gamma, self._arms[model], thetas[model])
                    for model, arm in sorted(self._tenants[tenant].items())
                ]
                tenant_arms.append(router_pb2.TenantArms(tenant=tenant, arms=states))
        return RouteArms(arms, tenant_arms)


class PolicyLearner:
    """Learning state for every learning route of a configuration; what the router keeps and exports."""

    def __init__(self, config: AtpConfig, *, decay: float = 1.0, dim: int = FEATURE_DIM):
        self.routes = {}
        for name, route in config.routes.items():
            setup = route_setup(route, dim)
            self.routes[name] = RouteLearner(
                name,
                {c: config.models[c].quality_prior for c in route.candidates},
                per_tenant=route.per_tenant,
                decay=decay,
                dim=setup.dim,
                learns_quality=setup.known_cost,
                starts=setup.starts(route.candidates, route.prior_rows),
            )

    def apply(self, event: observer_pb2.RewardEvent) -> bool:
        """Apply one reward event to its route; False when no route learns from it."""
        route = self.routes.get(event.route)
        return route.apply(event) if route is not None else False

    def apply_all(self, events: Iterable[observer_pb2.RewardEvent]) -> int:
        """Apply events in order; returns how many were applied."""
        return sum(1 for event in events if self.apply(event))

    def load_stats(self, stats: Iterable[observer_pb2.ArmStats]) -> int:
        """Seed arms from GetArmStats aggregates; returns how many rows were used."""
        used = 0
        for row in stats:
            route = self.routes.get(row.route)
            if route is not None and route.load_stats(row):
                used += 1
        return used

    def export(self) -> dict[str, RouteArms]:
        """Every route's ArmState protos, for snapshot_from_config."""
        return {name: route.export() for name, route in self.routes.items()}
