"""Spans for the Generate path when tracing is on: the routing decision and each provider attempt."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters.deployments import Deployment
from atp_adapters.providers import ProviderError
from atp_adapters.recorder import Call
from atp_common.policy.kernel import CompiledPolicy

if TYPE_CHECKING:
    from atp_adapters.targets import Target

# The route label of a request that named a concrete model.
DIRECT_ROUTE_LABEL = "direct"
_tracer = trace.get_tracer("atp.adapters")


def traced_decide(
    policy: CompiledPolicy,
    request: adapters_pb2.GenerateRequest,
    tenant: str,
    features: chat_pb2.RequestFeatures,
    rng: random.Random,
) -> chat_pb2.Decision:
    """The kernel's decision inside an `atp.route` span that records it."""
    with _tracer.start_as_current_span("atp.route") as span:
        decision = policy.decide(request.model, tenant, features, rng)
        span.set_attributes(
            {
                "atp.requested_model": request.model,
                "atp.route": decision.route or DIRECT_ROUTE_LABEL,
                "atp.policy": decision.policy,
                "atp.decision_id": decision.decision_id,
                "atp.tenant": tenant,
                "atp.model": decision.candidates[0].model if decision.candidates else "",
                "atp.candidates": [c.model for c in decision.candidates],
                "atp.filtered": [f"{f.model}: {f.reason}" for f in decision.filtered],
                "atp.propensity": decision.propensity,
                "atp.policy_version": decision.policy_version,
            }
        )
    # The Generate server span carries the decision too, so a trace search by decision id finds it.
    trace.get_current_span().set_attributes(
        {
            "atp.decision_id": decision.decision_id,
            "atp.tenant": tenant,
            "atp.request_id": request.request_id,
        }
    )
    return decision


async def traced_attempt(
    attempt: AsyncGenerator[adapters_pb2.GenerateResponse, None],
    target: Target,
    deployment: Deployment,
    call: Call,
    decision: chat_pb2.Decision,
    retry: int,
) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
    """`attempt` inside a client span that is current while the provider is called, so the provider's
    HTTP request carries this span's W3C traceparent."""
    span = _tracer.start_span(
        f"provider {deployment.provider_name}",
        kind=SpanKind.CLIENT,
        attributes={
            "atp.provider": deployment.provider_name,
            "atp.model": target.model,
            "atp.provider_model": deployment.provider_model,
            "atp.deployment": deployment.name,
            "atp.region": deployment.region,
            "atp.decision_id": decision.decision_id,
            "atp.route": decision.route or DIRECT_ROUTE_LABEL,
            "atp.retry": retry,
        },
    )
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            async with contextlib.aclosing(attempt):
                async for response in attempt:
                    yield response
        except ProviderError as exc:
            span.set_attribute("atp.error_kind", exc.kind)
            if exc.status is not None:
                span.set_attribute("http.response.status_code", exc.status)
            span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        finally:
            usage = call.usage
            if usage is not None and call.target is target:
                span.set_attributes(
                    {
                        "atp.finish_reason": call.finish_reason,
                        "gen_ai.usage.input_tokens": usage.prompt_tokens,
                        "gen_ai.usage.output_tokens": usage.completion_tokens,
                        "atp.usage_estimated": usage.estimated,
                        "atp.cost_usd": target.prices.cost(usage),
                    }
                )
            if call.first_token_at:
                span.set_attribute("atp.first_token", True)
