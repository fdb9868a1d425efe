"""The Embed call: decide with the kernel, admit, call candidates in rank order, bill and observe."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters import metrics, observations
from atp_adapters.admission import Admission
from atp_adapters.deployments import Deployment
from atp_adapters.policy_watch import PolicyHolder
from atp_adapters.providers import ProviderError
from atp_adapters.providers.base import EmbedCall, Embeddings
from atp_adapters.recorder import Call, Recorder
from atp_adapters.targets import Target, TargetTable, plan_calls
from atp_common import capabilities
from atp_common.errors import AtpError, InvalidArgument, Unavailable
from atp_common.logs import decision_id_var, request_id_var
from atp_common.policy.features import CHARS_PER_TOKEN, FEATURE_DIM

log = logging.getLogger("atp.adapters.embed")

_EMBEDDINGS = capabilities.BY_NAME["embeddings"].bit
# The most inputs one call may carry (OpenAI's own limit per request).
MAX_INPUTS = 2048
# Embeddings produce no output tokens: admission reserves none.
_NO_OUTPUT = chat_pb2.GenerationParams(max_tokens=0)
_VECTOR = (1.0,) + (0.0,) * (FEATURE_DIM - 1)


def validate(request: adapters_pb2.EmbedRequest) -> list[str | list[int]]:
    """The inputs as the provider contract takes them; InvalidArgument naming the input at fault."""
    if not request.inputs:
        raise InvalidArgument("input must not be empty", param="input")
    if len(request.inputs) > MAX_INPUTS:
        raise InvalidArgument(f"input may hold at most {MAX_INPUTS} items", param="input")
    if request.HasField("dimensions") and request.dimensions < 1:
        raise InvalidArgument("dimensions must be at least 1", param="dimensions")
    out: list[str | list[int]] = []
    for index, item in enumerate(request.inputs):
        kind = item.WhichOneof("kind")
        if kind == "text" and item.text:
            out.append(item.text)
        elif kind == "tokens" and item.tokens.ids:
            out.append(list(item.tokens.ids))
        else:
            raise InvalidArgument(
                f"input[{index}] must be a non-empty string or token list", param=f"input[{index}]"
            )
    return out


def _features(inputs: list[str | list[int]]) -> chat_pb2.RequestFeatures:
    tokens = sum(len(i) // CHARS_PER_TOKEN + 1 if isinstance(i, str) else len(i) for i in inputs)
    return chat_pb2.RequestFeatures(
        estimated_prompt_tokens=tokens, vector=_VECTOR, required_features=_EMBEDDINGS
    )


class EmbedPipeline:
    """Runs Embed calls with the same decision, admission, failover and observation as chat."""

    def __init__(
        self,
        holder: PolicyHolder,
        targets: TargetTable,
        recorder: Recorder,
        *,
        default_tenant: str,
        request_timeout_s: float,
        rng: random.Random | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._holder = holder
        self._targets = targets
        self._recorder = recorder
        self._default_tenant = default_tenant
        self._request_timeout_s = request_timeout_s
        self._rng = rng or random.Random()
        self._admission = admission

    async def embed(
        self,
        request: adapters_pb2.EmbedRequest,
        time_remaining: float | None = None,
        send_metadata: Callable[[tuple[tuple[str, str], ...]], None] | None = None,
    ) -> adapters_pb2.EmbedResponse:
        """Serve one Embed call; raises AtpError when no candidate can serve it.

        With limits for the tenant or key, `send_metadata` receives the x-ratelimit-* values.
        """
        started_wall = time.time()
        started = time.perf_counter()
        inputs = validate(request)
        tenant = request.tenant or self._default_tenant
        if not tenant:
            raise InvalidArgument("tenant must be set by the caller", param="tenant")
        request_id = request.request_id or uuid.uuid4().hex
        request_id_var.set(request_id)
        decision = self._holder.policy.decide(request.model, tenant, _features(inputs), self._rng)
        decision_id_var.set(decision.decision_id)
        ticket = None
        if self._admission is not None:
            if not self._admission.knows_key(request.key_id):
                await self._admission.catch_up()
            self._admission.filter_models(request.key_id, request.model, decision)
            user = request.end_user or request.user
            ticket = await self._admission.admit(tenant, request.key_id, decision, _NO_OUTPUT, user)
            if ticket is not None and ticket.headers and send_metadata is not None:
                send_metadata(ticket.headers)
        budget = (
            self._request_timeout_s
            if time_remaining is None
            else min(time_remaining, self._request_timeout_s)
        )
        call = Call()
        try:
            response = await self._run(request, inputs, decision, call, time.monotonic() + budget)
            header = response.header
            header.decision_id, header.route, header.request_id = (
                decision.decision_id,
                decision.route,
                request_id,
            )
            header.created = int(started_wall)
            response.latency_ms = (time.perf_counter() - started) * 1000.0
            return response
        except AtpError as exc:
            call.error_class = type(exc).__name__
            raise
        except asyncio.CancelledError:
            call.status, call.error_class = observations.CANCELLED, "Cancelled"
            raise
        finally:
            self._record(request, inputs, tenant, request_id, decision, call, started, started_wall)
            if ticket is not None and self._admission is not None:
                self._admission.settle(ticket, call.usage, call.target, False)

    def _record(
        self,
        request: adapters_pb2.EmbedRequest,
        inputs: list[str | list[int]],
        tenant: str,
        request_id: str,
        decision: chat_pb2.Decision,
        call: Call,
        started: float,
        started_wall: float,
    ) -> None:
        """Metrics and the observation of a call that ended, however it ended; the inputs as its prompt."""
        messages = [
            chat_pb2.ChatMessage(role="user", content=i if isinstance(i, str) else " ".join(map(str, i)))
            for i in inputs
        ]
        route_label = decision.route or "direct"
        self._recorder.finish(
            messages,
            tenant,
            request_id,
            decision,
            route_label,
            call,
            started,
            started_wall,
            end_user=request.end_user or request.user,
            key_id=request.key_id,
            tags=request.tags,
            dialect="embeddings",
        )

    async def _run(
        self,
        request: adapters_pb2.EmbedRequest,
        inputs: list[str | list[int]],
        decision: chat_pb2.Decision,
        call: Call,
        deadline: float,
    ) -> adapters_pb2.EmbedResponse:
        last_error: ProviderError | None = None
        skipped: list[str] = []
        regions = self._holder.policy.region_filter(request.tenant or self._default_tenant, decision.features)
        async for target, deployment in plan_calls(self._targets.current, decision, regions, skipped):
            retries = 0
            while deployment.breaker.allow():
                call.target, call.deployment = target, deployment
                try:
                    result = await self._call(request, inputs, deployment, call, deadline)
                except ProviderError as exc:
                    deployment.failed(exc, time.monotonic())
                    metrics.attempt(target.model, exc.kind).inc()
                    call.attempts += 1
                    last_error = exc
                    delay = deployment.retry.delay_for(retries, exc, deadline - time.monotonic())
                    if delay is None:
                        log.info("failing over from %s at %s: %s", target.model, deployment.name, exc.message)
                        break
                    retries += 1
                    await asyncio.sleep(delay)
                    continue
                deployment.breaker.record_success()
                metrics.attempt(target.model, "ok").inc()
                call.status = observations.OK
                return self._response(target, deployment, inputs, result, call)
            else:
                skipped.append(f"{target.model} at {deployment.name}: circuit open")
        if last_error is not None:
            raise last_error.to_atp() from last_error
        raise Unavailable(
            f"no candidate could be tried ({'; '.join(skipped) or 'none ranked'})", retry_after=1.0
        )

    @staticmethod
    async def _call(
        request: adapters_pb2.EmbedRequest,
        inputs: list[str | list[int]],
        deployment: Deployment,
        call: Call,
        deadline: float,
    ) -> Embeddings:
        embed_call = EmbedCall(
            provider_model=deployment.provider_model,
            inputs=inputs,
            dimensions=request.dimensions if request.HasField("dimensions") else None,
            user=request.user,
            request_id=request.request_id,
            deadline=deadline,
        )
        waited = time.perf_counter()
        try:
            return await deployment.provider.embed(embed_call)
        finally:
            call.provider_s += time.perf_counter() - waited

    @staticmethod
    def _response(
        target: Target,
        deployment: Deployment,
        inputs: list[str | list[int]],
        result: Embeddings,
        call: Call,
    ) -> adapters_pb2.EmbedResponse:
        usage = result.usage
        if usage is None:
            estimate = _features(inputs).estimated_prompt_tokens
            usage = chat_pb2.Usage(prompt_tokens=estimate, estimated=True)
        call.usage = usage
        call.finish_reason = "stop"
        response = adapters_pb2.EmbedResponse(
            header=adapters_pb2.GenerateHeader(
                model=target.model,
                provider=deployment.provider_name,
                deployment=deployment.name,
                region=deployment.region,
            ),
            usage=usage,
            cost_usd=target.prices.cost(usage),
            provider_ms=call.provider_s * 1000.0,
        )
        add = response.embeddings.add
        for vector in result.vectors:
            add(values=vector)
        return response
