"""One call of one deployment: provider batches in, GenerateResponse messages out, and how it ended."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters import metrics, observations
from atp_adapters.deployments import Deployment
from atp_adapters.providers import ProviderBatch, ProviderError, ProviderRequest
from atp_adapters.recorder import Call
from atp_adapters.reply_parts import count_output_chars, is_output, reply_metadata
from atp_adapters.targets import Target
from atp_common.policy.features import CHARS_PER_TOKEN

log = logging.getLogger("atp.adapters.generate")

_FINISH_REASONS: Mapping[str, adapters_pb2.FinishReason] = {
    "stop": adapters_pb2.FINISH_REASON_STOP,
    "length": adapters_pb2.FINISH_REASON_LENGTH,
    "tool_calls": adapters_pb2.FINISH_REASON_TOOL_CALLS,
    "content_filter": adapters_pb2.FINISH_REASON_CONTENT_FILTER,
}


async def run_attempt(
    target: Target,
    deployment: Deployment,
    provider_request: ProviderRequest,
    decision: chat_pb2.Decision,
    call: Call,
    started: float,
) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
    """One call of one deployment, counted in its in-flight requests while it runs."""
    deployment.in_flight += 1
    try:
        async with contextlib.aclosing(
            _exchange(target, deployment, provider_request, decision, call, started)
        ) as exchange:
            async for response in exchange:
                yield response
    finally:
        deployment.in_flight -= 1


async def _exchange(
    target: Target,
    deployment: Deployment,
    provider_request: ProviderRequest,
    decision: chat_pb2.Decision,
    call: Call,
    started: float,
) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
    """The provider's batches as messages: the header on the first output, the completion on the last."""
    header = _header(target, deployment, provider_request, decision)
    attempt_started = time.perf_counter()
    stream_out = provider_request.stream
    pending: list[chat_pb2.Delta] = []  # non-streamed calls collect everything into one message
    output_chars = 0
    header_sent = False
    batches = deployment.provider.stream(provider_request)
    async with contextlib.aclosing(batches):
        while True:
            waited = time.perf_counter()
            try:
                batch: ProviderBatch = await anext(batches)
            except StopAsyncIteration:
                raise _cut(deployment, call) from None
            finally:
                call.provider_s += time.perf_counter() - waited
            output_chars += count_output_chars(batch.deltas)
            if not header_sent and (batch.response_id or batch.model_version or batch.service_tier):
                reply_metadata(header, batch)
            final = bool(batch.finish_reason)
            if not stream_out:
                pending.extend(batch.deltas)
                if not final:
                    continue
                deltas = pending
            else:
                deltas = batch.deltas
                if not header_sent and deltas and not any(is_output(d) for d in deltas):
                    # A role-only opening event is no output yet: failover must still be possible.
                    deltas = []
                if not deltas and not final:
                    continue  # nothing to tell the client yet
            if deltas and not header_sent and not deltas[0].role:
                deltas[0].role = "assistant"
            response = adapters_pb2.GenerateResponse(deltas=deltas)
            if not header_sent:
                response.header.CopyFrom(header)
                header_sent = True
                call.first_token_at = time.perf_counter()
                deployment.observe_first_token((call.first_token_at - attempt_started) * 1000.0)
            if final:
                _complete(response, batch, call, target, decision, started, output_chars)
                yield response
                return
            yield response


def _header(
    target: Target, deployment: Deployment, provider_request: ProviderRequest, decision: chat_pb2.Decision
) -> adapters_pb2.GenerateHeader:
    """The first message's header: what answers, for which decision."""
    return adapters_pb2.GenerateHeader(
        decision_id=decision.decision_id,
        model=target.model,
        provider=deployment.provider_name,
        route=decision.route,
        request_id=provider_request.request_id,
        created=int(time.time()),
        deployment=deployment.name,
        region=deployment.region,
    )


def _cut(deployment: Deployment, call: Call) -> ProviderError:
    """The provider's stream ended before it said the reply was finished."""
    return ProviderError(
        f"provider {deployment.provider_name} ended the reply without a finish reason",
        kind="cut",
        provider=deployment.provider_name,
        before_first_token=not call.first_token_at,
    )


def _complete(
    response: adapters_pb2.GenerateResponse,
    batch: ProviderBatch,
    call: Call,
    target: Target,
    decision: chat_pb2.Decision,
    started: float,
    output_chars: int,
) -> None:
    """The last message's completion: finish reasons, usage (estimated when the provider sent none),
    cost and timings."""
    call.finish_reason = batch.finish_reason
    usage = batch.usage
    if usage is None:
        usage = chat_pb2.Usage(
            prompt_tokens=decision.features.estimated_prompt_tokens,
            completion_tokens=-(-output_chars // CHARS_PER_TOKEN),
            estimated=True,
        )
    call.usage = usage
    now = time.perf_counter()
    completion = response.completion
    completion.finish_reason = _FINISH_REASONS.get(
        batch.finish_reason, adapters_pb2.FINISH_REASON_UNSPECIFIED
    )
    if batch.choice_finish_reasons:
        reasons = batch.choice_finish_reasons
        completion.choice_finish_reasons.extend(
            _FINISH_REASONS.get(reasons.get(i, ""), adapters_pb2.FINISH_REASON_UNSPECIFIED)
            for i in range(max(reasons) + 1)
        )
    completion.stop_sequence = batch.stop_sequence
    if batch.provider_fields:
        completion.provider_fields.update(batch.provider_fields)
    completion.usage.CopyFrom(usage)
    completion.cost_usd = target.prices.cost(usage)
    completion.latency_ms = (now - started) * 1000.0
    completion.provider_ms = call.provider_s * 1000.0
    completion.time_to_first_token_ms = (call.first_token_at - started) * 1000.0


def failed(target: Target, deployment: Deployment, exc: ProviderError) -> None:
    """A failed attempt, counted by the deployment's breaker and the attempts metric."""
    deployment.failed(exc, time.monotonic())
    metrics.attempt(target.model, exc.kind).inc()


def retry_delay(
    target: Target, deployment: Deployment, call: Call, exc: ProviderError, retries: int, deadline: float
) -> float | None:
    """Seconds before retrying a failure that sent no output, or None to fail over to the next one."""
    call.attempts += 1
    delay = deployment.retry.delay_for(retries, exc, deadline - time.monotonic())
    if delay is None:
        log.info("failing over from %s at %s: %s", target.model, deployment.name, exc.message)
    return delay


def broken(call: Call, exc: ProviderError) -> adapters_pb2.GenerateResponse:
    """Output was sent when the provider failed: never retry, end with an explicit terminal error."""
    call.status = observations.PARTIAL
    atp_error = exc.to_atp()
    call.error_class = type(atp_error).__name__
    log.warning("provider failed mid-stream: %s", exc.message)
    return adapters_pb2.GenerateResponse(
        error=adapters_pb2.GenerateError(
            code=atp_error.mapping.grpc_code.name,
            message=atp_error.message,
            type=atp_error.mapping.openai_type,
        )
    )


def succeeded(target: Target, deployment: Deployment, call: Call) -> None:
    """A successful attempt: the breaker closes further and the call is OK."""
    deployment.breaker.record_success()
    metrics.attempt(target.model, "ok").inc()
    call.status = observations.OK
