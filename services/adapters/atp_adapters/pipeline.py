"""The Generate hot path: validate, decide locally, call candidates in rank order, stream, observe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import NoReturn

from opentelemetry import trace
from prometheus_client import Counter

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters import metrics, observations, response_cache
from atp_adapters.admission import Admission
from atp_adapters.attempt import broken, failed, retry_delay, run_attempt, succeeded
from atp_adapters.count import TokenCounter
from atp_adapters.deployments import Deployment
from atp_adapters.policy_watch import PolicyHolder
from atp_adapters.providers import ProviderError, ProviderRequest
from atp_adapters.recorder import Call, Recorder
from atp_adapters.shipper import ObservationShipper
from atp_adapters.targets import QUOTA_SPENT, TargetTable, plan_calls
from atp_adapters.tracing import DIRECT_ROUTE_LABEL, traced_attempt, traced_decide
from atp_adapters.validation import RANGED, validate, validate_ranges
from atp_common.config import AtpConfig
from atp_common.errors import AtpError, InvalidArgument, RateLimited, Unavailable
from atp_common.logs import decision_id_var, request_id_var
from atp_common.policy.features import compute_features
from atp_common.privacy import redact_messages
from atp_common.telemetry import current_trace_id

log = logging.getLogger("atp.adapters.generate")


class GeneratePipeline:
    """Runs Generate calls. Built once per process; all per-model work is precomputed here.

    For each ranked candidate: skip it when its circuit refuses; call it; retry retryable errors per its
    RetryPolicy; fail over to the next candidate on any failure before the first delta was sent. After
    that, a failure ends the stream with a terminal `GenerateResponse.error` (observation PARTIAL). Each
    response message carries the deltas of one provider batch (one network read); the first message
    carries the header, the last the completion. A non-streamed call yields exactly one message.
    """

    def __init__(
        self,
        config: AtpConfig,
        holder: PolicyHolder,
        targets: TargetTable,
        shipper: ObservationShipper,
        *,
        replica_id: str,
        default_tenant: str,
        request_timeout_s: float,
        rng: random.Random | None = None,
        admission: Admission | None = None,
        cache: response_cache.ResponseCache | None = None,
    ) -> None:
        self._holder = holder
        self._admission = admission
        self._cache = cache
        self._targets = targets
        self._default_tenant = default_tenant
        self._request_timeout_s = request_timeout_s
        self._rng = rng or random.Random()
        self._shipper = shipper
        self._replica_id = replica_id
        # Metrics, the observation and stored prompts at the end of every call.
        self.recorder = Recorder(config, shipper, replica_id)
        # Who gets PII redaction of forwarded messages (routes that ask), decided once.
        self._privacy = self.recorder.privacy
        self._decision_counters: dict[tuple[str, str], Counter] = {}
        # Counts decide exactly as generation does (semantic features included), with the same deadline.
        self.counter = TokenCounter(
            lambda request, tenant: self._decide(request, tenant, False, routed=True),
            self._deadline,
            holder,
            targets,
            self._privacy,
            default_tenant=default_tenant,
            admission=admission,
        )

    async def generate(
        self,
        request: adapters_pb2.GenerateRequest,
        time_remaining: float | None = None,
        send_metadata: Callable[[tuple[tuple[str, str], ...]], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
        """Serve one Generate call. Raises AtpError before any output; yields responses after.

        With limits configured for the tenant or its API key (`request.key_id`), the request is admitted
        (or refused with RateLimited / BudgetExceeded) before any provider is called, `send_metadata`
        receives the x-ratelimit-* values, and the reservation is settled from the actual usage when the
        call ends, however it ends.
        """
        started_wall = time.time()
        started = time.perf_counter()
        tenant = self._tenant_of(request)
        request_id = request.request_id or uuid.uuid4().hex
        request_id_var.set(request_id)
        if self._admission is not None and not self._admission.knows_key(request.key_id):
            await self._admission.catch_up()
        plan, stored = await self._lookup(request, tenant)
        # Spans only inside a recorded trace (the server interceptor's span exists when tracing is on):
        # the untraced hot path pays for one context lookup.
        traced = trace.get_current_span().is_recording()
        decision = self._decide(request, tenant, traced, routed=stored is None)
        route_label = decision.route or DIRECT_ROUTE_LABEL
        self._count_decision(route_label, decision.candidates[0].model)
        ticket = None
        if self._admission is not None:
            user = request.end_user or request.params.user
            ticket = await self._admission.admit(tenant, request.key_id, decision, request.params, user)
            if ticket is not None and ticket.headers and send_metadata is not None:
                await send_metadata(ticket.headers)
        deadline = self._deadline(time_remaining)
        call = self._open_call(request, request_id, tenant, decision, started_wall, traced)
        try:
            source = self._source(
                request, request_id, decision, call, started, deadline, traced, plan, stored
            )
            # aclosing: when this generator is closed, the provider stream below it closes now, not at GC.
            async with contextlib.aclosing(source) as run:
                async for response in run:
                    yield response
        except (asyncio.CancelledError, GeneratorExit):
            # A caller may stop reading as soon as it has the completion: that call was served.
            if call.status != observations.OK:
                call.status = observations.CANCELLED
                call.error_class = "Cancelled"
            raise
        except AtpError as exc:
            call.error_class = type(exc).__name__
            raise
        except Exception:
            call.error_class = "Internal"
            raise
        finally:
            self._end_call(request, tenant, request_id, decision, route_label, call, started, started_wall)
            if ticket is not None and self._admission is not None:
                self._admission.settle(ticket, call.usage, call.target, bool(call.first_token_at))

    def _tenant_of(self, request: adapters_pb2.GenerateRequest) -> str:
        """The request's tenant once the request is valid; the process default when it names none."""
        validate(request)
        tenant = request.tenant or self._default_tenant
        if not tenant:
            raise InvalidArgument("tenant must be set by the caller", param="tenant")
        return tenant

    def _decide(
        self, request: adapters_pb2.GenerateRequest, tenant: str, traced: bool, *, routed: bool
    ) -> chat_pb2.Decision:
        """The policy's ranked candidates for this request, filtered by what its API key may use."""
        features = compute_features(request.messages, request.params, request.stream)
        if features.required_features & RANGED:
            validate_ranges(request.params)
        if request.regions:
            features.regions.extend(request.regions)
        encoder = self._holder.policy.semantic_encoder(request.model) if routed else None
        if encoder is not None:
            # Only routes whose policy uses semantic features pay for them, and a cache hit is not routed.
            features.vector.extend(encoder.encode(request.messages))
        if traced:
            decision = traced_decide(self._holder.policy, request, tenant, features, self._rng)
        else:
            decision = self._holder.policy.decide(request.model, tenant, features, self._rng)
        if self._admission is not None:
            self._admission.filter_models(request.key_id, request.model, decision)
        decision_id_var.set(decision.decision_id)
        return decision

    def _deadline(self, time_remaining: float | None) -> float:
        """When the call must be over: the caller's deadline, capped by the configured request timeout."""
        budget = (
            self._request_timeout_s
            if time_remaining is None
            else min(time_remaining, self._request_timeout_s)
        )
        return time.monotonic() + budget

    def _open_call(
        self,
        request: adapters_pb2.GenerateRequest,
        request_id: str,
        tenant: str,
        decision: chat_pb2.Decision,
        started_wall: float,
        traced: bool,
    ) -> Call:
        """What the call records as it goes; a streamed call's observation is opened now."""
        call = Call()
        if traced:
            call.trace_id = current_trace_id()
        if request.stream:
            # In the observation log from the start: a process killed mid-stream still leaves one.
            call.observation_id, call.opened = observations.open_stream(
                self._shipper.open,
                request_id=request_id,
                tenant=tenant,
                decision=decision,
                started_wall=started_wall,
                replica_id=self._replica_id,
            )
        return call

    def _end_call(
        self,
        request: adapters_pb2.GenerateRequest,
        tenant: str,
        request_id: str,
        decision: chat_pb2.Decision,
        route_label: str,
        call: Call,
        started: float,
        started_wall: float,
    ) -> None:
        """Metrics, the observation and the stored prompt of a call that ended, however it ended."""
        self.recorder.finish(
            request.messages,
            tenant,
            request_id,
            decision,
            route_label,
            call,
            started,
            started_wall,
            key_id=request.key_id,
            end_user=request.end_user or request.params.user,
            tags=request.tags,
            dialect=request.dialect,
        )

    async def _lookup(
        self, request: adapters_pb2.GenerateRequest, tenant: str
    ) -> tuple[response_cache.CachePlan | None, adapters_pb2.GenerateResponse | None]:
        """The cache plan and the stored reply that answers it, before any routing work."""
        plan = self._cache.plan(request, tenant) if self._cache is not None else None
        if plan is None or not plan.read or self._cache is None:
            return plan, None
        stored = await self._cache.get(plan)
        if stored is None:
            return plan, None
        # A reply stored before the tenant's lists changed, or for another key of the tenant (the entry
        # is the tenant's, not the API key's), may come from a model this request may not use: then it
        # is not an answer for it.
        model = stored.header.model
        if not self._holder.policy.tenant_allows(tenant, model) or (
            self._admission is not None and not self._admission.key_allows(request.key_id, model)
        ):
            return plan, None
        return plan, stored

    def _source(
        self,
        request: adapters_pb2.GenerateRequest,
        request_id: str,
        decision: chat_pb2.Decision,
        call: Call,
        started: float,
        deadline: float,
        traced: bool,
        plan: response_cache.CachePlan | None,
        stored: adapters_pb2.GenerateResponse | None,
    ) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
        """The cache's stored reply when it held one, else the providers' (stored when the plan says)."""
        if stored is not None and plan is not None:
            return self._replayed(stored, request, request_id, call, plan.outcome)
        run = self._run(request, request_id, decision, call, started, deadline, traced)
        return self._storing(run, plan, call) if plan is not None and plan.store else run

    async def _replayed(
        self,
        stored: adapters_pb2.GenerateResponse,
        request: adapters_pb2.GenerateRequest,
        request_id: str,
        call: Call,
        outcome: str,
    ) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
        call.cache_hit = True
        call.cached_decision_id = stored.header.decision_id
        call.saved_cost_usd = stored.completion.cost_usd
        call.target = self._targets.current.get(stored.header.model)
        # No provider was called: nothing was used, and the admission's reservation is given back.
        call.usage = chat_pb2.Usage()
        call.finish_reason = "stop"
        call.first_token_at = time.perf_counter()
        for message in response_cache.replay(stored, request, request_id, outcome):
            yield message
        call.status = observations.OK

    async def _storing(
        self,
        run: AsyncGenerator[adapters_pb2.GenerateResponse, None],
        plan: response_cache.CachePlan,
        call: Call,
    ) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
        """`run`'s messages, kept and stored once the reply is whole and successful (never an error, a
        partial or a cancelled reply)."""
        kept = adapters_pb2.GenerateResponse()
        async with contextlib.aclosing(run):
            async for message in run:
                if message.HasField("header"):
                    message.header.cache = "refresh" if plan.mode == "refresh" else "miss"
                kept.MergeFrom(message)
                if message.HasField("completion") and not kept.HasField("error") and self._cache is not None:
                    # Stored before the completion leaves: a caller may stop reading once it has it.
                    kept.header.cache = ""
                    stored_until = await self._cache.put(plan, kept)
                    if message.HasField("header"):
                        # A whole reply in one message (non-streamed): a gateway may keep a copy.
                        message.header.cache_expires_at_ms = stored_until
                yield message

    async def _run(
        self,
        request: adapters_pb2.GenerateRequest,
        request_id: str,
        decision: chat_pb2.Decision,
        call: Call,
        started: float,
        deadline: float,
        traced: bool = False,
    ) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
        last_error: ProviderError | None = None
        skipped: list[str] = []
        messages = request.messages
        scrub = self._privacy.for_upstream(decision.route)
        if scrub is not None:
            messages = redact_messages(messages, scrub)
        tenant = request.tenant or self._default_tenant
        regions = self._holder.policy.region_filter(tenant, decision.features)
        plan = plan_calls(self._targets.current, decision, regions, skipped)
        async for target, deployment in plan:
            retries = 0
            while True:
                if not deployment.breaker.allow():
                    skipped.append(f"{target.model} at {deployment.name}: circuit open")
                    break
                call.target, call.deployment = target, deployment
                provider_request = _provider_request(request, request_id, deployment, messages, deadline)
                attempt = run_attempt(target, deployment, provider_request, decision, call, started)
                if traced:
                    attempt = traced_attempt(attempt, target, deployment, call, decision, retries)
                try:
                    async with contextlib.aclosing(attempt):
                        async for response in attempt:
                            yield response
                except ProviderError as exc:
                    failed(target, deployment, exc)
                    if call.first_token_at:
                        yield broken(call, exc)
                        return
                    last_error = exc
                    delay = retry_delay(target, deployment, call, exc, retries, deadline)
                    if delay is None:
                        break
                    retries += 1
                    await asyncio.sleep(delay)
                except (asyncio.CancelledError, GeneratorExit):
                    if call.finish_reason:
                        # Closed after the completion was handed over: the attempt succeeded.
                        succeeded(target, deployment, call)
                    raise
                else:
                    succeeded(target, deployment, call)
                    return
        _raise_unserved(last_error, skipped)

    def _count_decision(self, route: str, model: str) -> None:
        counter = self._decision_counters.get((route, model))
        if counter is None:
            counter = self._decision_counters[(route, model)] = metrics.DECISIONS.labels(route, model)
        counter.inc()


def _provider_request(
    request: adapters_pb2.GenerateRequest,
    request_id: str,
    deployment: Deployment,
    messages: Sequence[chat_pb2.ChatMessage],
    deadline: float,
) -> ProviderRequest:
    """What one deployment is asked: the request's messages (redacted when the route says) and params,
    a max_tokens above the model's most output tokens as that most (the same bound in effect)."""
    params = request.params
    cap = deployment.max_output_tokens
    if cap and params.HasField("max_tokens") and params.max_tokens > cap:
        params = chat_pb2.GenerationParams()
        params.CopyFrom(request.params)
        params.max_tokens = cap
    return ProviderRequest(
        provider_model=deployment.provider_model,
        messages=messages,
        params=params,
        stream=request.stream,
        include_usage=True,
        request_id=request_id,
        deadline=deadline,
        adaptive_thinking=deployment.adaptive_thinking,
    )


def _raise_unserved(last_error: ProviderError | None, skipped: list[str]) -> NoReturn:
    """Why no candidate served the call: the last failure, spent quotas, or nothing that could be tried."""
    if last_error is not None:
        raise last_error.to_atp() from last_error
    if any(reason.endswith(QUOTA_SPENT) for reason in skipped):
        raise RateLimited("every deployment's quota is spent for this minute", retry_after=1.0)
    raise Unavailable(f"no candidate could be tried ({'; '.join(skipped) or 'none ranked'})", retry_after=1.0)
