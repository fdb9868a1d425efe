"""Limits and budgets at the one place every request passes: reserve before the provider call, settle after."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from atp.common.v1 import chat_pb2
from atp_adapters.limits import Limiter, Ticket
from atp_common.errors import PermissionDenied
from atp_common.limits.directory import DirectoryFollower

if TYPE_CHECKING:
    from atp_adapters.targets import Target, TargetTable

__all__ = ["Admission"]


class Admission:
    """Admits a request for its tenant and, when the API key that made it has limits of its own, for that
    key too: requests, a token estimate and a cost estimate, in one limiter call.

    The cost estimate is the most expensive candidate's price for the estimated prompt plus max_tokens
    (or `default_output_tokens`), because failover may serve the request with any ranked candidate; the
    spend is settled from the actual cost afterwards. A request without limits costs two dict lookups.
    """

    def __init__(
        self,
        limiter: Limiter,
        follower: DirectoryFollower,
        targets: TargetTable,
        *,
        default_output_tokens: int,
        reservation_caps: Mapping[str, int] | None = None,
    ):
        self.limiter = limiter
        self.follower = follower
        self._targets = targets
        self._default_output_tokens = default_output_tokens
        # Per route: its max_reservation_tokens, when it caps the default output estimate.
        self._reservation_caps = dict(reservation_caps or {})

    def knows_key(self, key_id: str) -> bool:
        """False when `key_id` is news to the directory: the gateway authenticated a key created an
        instant ago, whose own limits and model lists must hold from its first request, not from the next
        poll; the caller then awaits `catch_up`. One set lookup."""
        return not key_id or key_id in self.follower.directory.key_ids

    async def catch_up(self) -> None:
        await self.follower.catch_up()

    def key_allows(self, key_id: str, model: str) -> bool:
        """Whether the key's own model lists let it use `model` (True for a key without lists)."""
        lists = self.follower.directory.models_for(key_id) if key_id else None
        if lists is None:
            return True
        return (lists.allowed is None or model in lists.allowed) and model not in lists.denied

    def filter_models(self, key_id: str, request_model: str, decision: chat_pb2.Decision) -> None:
        """Remove the candidates the key's own model lists exclude, as the tenant's lists do in the kernel;
        PermissionDenied naming the models when none is left. A key without lists costs one dict lookup."""
        if not key_id:
            return
        lists = self.follower.directory.models_for(key_id)
        if lists is None:
            return
        kept: list[chat_pb2.RankedCandidate] = []
        removed: list[chat_pb2.FilteredCandidate] = []
        for candidate in decision.candidates:
            if lists.allowed is not None and candidate.model not in lists.allowed:
                reason = f"not in API key {key_id!r} allowed_models"
            elif candidate.model in lists.denied:
                reason = f"in API key {key_id!r} denied_models"
            else:
                kept.append(candidate)
                continue
            removed.append(chat_pb2.FilteredCandidate(model=candidate.model, reason=reason))
        if not removed:
            return
        if not kept:
            details = "; ".join(f"{f.model}: {f.reason}" for f in removed)
            raise PermissionDenied(f"no candidate of {request_model!r} can serve this request ({details})")
        del decision.candidates[:]
        decision.candidates.extend(kept)
        decision.filtered.extend(removed)

    async def admit(
        self,
        tenant: str,
        key_id: str,
        decision: chat_pb2.Decision,
        params: chat_pb2.GenerationParams,
        user: str = "",
    ) -> Ticket | None:
        """None when neither the tenant, the key (`key_id`, empty for callers without one) nor the end
        user (`user`, may be empty) has limits; raises RateLimited / BudgetExceeded / Unavailable."""
        limits = self.follower.directory.limits_for(tenant, key_id, user)
        if limits is None:
            return None
        prompt = decision.features.estimated_prompt_tokens
        if params.HasField("max_tokens"):
            output = params.max_tokens
        else:
            output = min(
                self._default_output_tokens,
                self._reservation_caps.get(decision.route, self._default_output_tokens),
            )
        cost = 0.0
        if limits.limits_budget:
            for candidate in decision.candidates:
                target = self._targets.current.get(candidate.model)
                if target is not None:
                    prices = target.prices
                    estimate = prompt * prices.input + output * max(prices.output, prices.reasoning)
                    cost = max(cost, estimate)
        return await self.limiter.admit(limits, tokens=prompt + output, cost_usd=cost)

    async def admit_request(self, tenant: str, key_id: str, user: str = "") -> Ticket | None:
        """A request that generates nothing (a token count): one request against the rate limits, no
        tokens and no dollars; settle it with no usage."""
        limits = self.follower.directory.limits_for(tenant, key_id, user)
        if limits is None:
            return None
        return await self.limiter.admit(limits, tokens=0, cost_usd=0.0)

    def settle(
        self,
        ticket: Ticket,
        usage: chat_pb2.Usage | None,
        target: Target | None,
        produced_output: bool,
    ) -> None:
        """Correct the reservation to the actual usage and cost.

        A reply cut after output without usage (cancelled or broken mid-stream) keeps its reservation:
        the provider bills what it generated, which is unknown here, and the estimate bounds it.
        """
        if usage is None:
            if produced_output:
                return
            self.limiter.settle(ticket, tokens=0, cost_usd=0.0)
            return
        cost = target.prices.cost(usage) if target is not None else 0.0
        self.limiter.settle(ticket, tokens=usage.prompt_tokens + usage.completion_tokens, cost_usd=cost)
