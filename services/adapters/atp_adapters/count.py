"""CountTokens: a request's input tokens, counted by the provider of the first ranked candidate that can."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters.admission import Admission
from atp_adapters.policy_watch import PolicyHolder
from atp_adapters.providers import ProviderError, ProviderRequest
from atp_adapters.targets import TargetTable
from atp_adapters.validation import validate
from atp_common.errors import InvalidArgument
from atp_common.privacy import PrivacyPolicy, redact_messages

__all__ = ["TokenCounter"]


class TokenCounter:
    """Decides as for generation (the same ranking, tenant and key model lists, regions and required
    features), then asks each candidate's deployments in rank order until one counts. A count is one
    request against the tenant's, key's and user's rate limits (it calls a provider with the platform's
    key) but generates nothing: no tokens or dollars, no observation, no deployment quota, and its
    failures do not move circuits (a provider's count endpoint says little about its generation)."""

    def __init__(
        self,
        decide: Callable[[adapters_pb2.GenerateRequest, str], chat_pb2.Decision],
        deadline: Callable[[float | None], float],
        holder: PolicyHolder,
        targets: TargetTable,
        privacy: PrivacyPolicy,
        *,
        default_tenant: str,
        admission: Admission | None = None,
    ) -> None:
        self._decide = decide
        self._deadline = deadline
        self._holder = holder
        self._targets = targets
        self._privacy = privacy
        self._default_tenant = default_tenant
        self._admission = admission

    async def count(
        self, request: adapters_pb2.GenerateRequest, time_remaining: float | None = None
    ) -> adapters_pb2.CountTokensResponse:
        """The count; InvalidArgument naming every candidate and why when none can count, else the last
        provider error."""
        validate(request)
        tenant = request.tenant or self._default_tenant
        if not tenant:
            raise InvalidArgument("tenant must be set by the caller", param="tenant")
        admission = self._admission
        if admission is not None and not admission.knows_key(request.key_id):
            await admission.catch_up()
        decision = self._decide(request, tenant)
        messages = request.messages
        scrub = self._privacy.for_upstream(decision.route)
        if scrub is not None:
            # What would be forwarded is what is counted: a route that redacts redacts its counts too.
            messages = redact_messages(messages, scrub)
        ask = ProviderRequest(
            provider_model="",
            messages=messages,
            params=request.params,
            stream=False,
            include_usage=False,
            request_id=request.request_id or uuid.uuid4().hex,
            deadline=self._deadline(time_remaining),
        )
        ticket = None
        if admission is not None:
            ticket = await admission.admit_request(
                tenant, request.key_id, request.end_user or request.params.user
            )
        try:
            return await self._ask(request.model, tenant, decision, ask)
        finally:
            if ticket is not None and admission is not None:
                admission.settle(ticket, None, None, False)

    async def _ask(
        self, model: str, tenant: str, decision: chat_pb2.Decision, ask: ProviderRequest
    ) -> adapters_pb2.CountTokensResponse:
        """Each ranked candidate's usable deployments in turn, until one counts."""
        features = decision.features
        regions = self._holder.policy.region_filter(tenant, features)
        skipped: list[str] = []
        last_error: ProviderError | None = None
        for candidate in decision.candidates:
            target = self._targets.current.get(candidate.model)
            if target is None:
                skipped.append(f"{candidate.model}: not configured here")
                continue
            for deployment in target.deployments.candidates(features.required_features, regions):
                try:
                    tokens = await deployment.provider.count_tokens(
                        replace(
                            ask,
                            provider_model=deployment.provider_model,
                            adaptive_thinking=deployment.adaptive_thinking,
                        )
                    )
                except ProviderError as exc:
                    if exc.kind == "unsupported":
                        skipped.append(f"{candidate.model} at {deployment.name}: {exc.message}")
                    else:
                        last_error = exc
                    continue
                return adapters_pb2.CountTokensResponse(
                    input_tokens=tokens,
                    model=target.model,
                    provider=deployment.provider_name,
                    deployment=deployment.name,
                    decision_id=decision.decision_id,
                )
        if last_error is not None:
            raise last_error.to_atp() from last_error
        reasons = "; ".join(skipped) or "none ranked"
        raise InvalidArgument(f"no candidate of {model!r} can count tokens ({reasons})", param="model")
