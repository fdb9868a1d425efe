"""The end of every call: metrics, the observation (with the prompt digest or stored prompt) for the shipper."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_adapters import metrics, observations
from atp_adapters.shipper import ObservationShipper
from atp_common.config import AtpConfig
from atp_common.policy import CACHE_POLICY
from atp_common.privacy import PrivacyPolicy

if TYPE_CHECKING:
    from atp_adapters.deployments import Deployment
    from atp_adapters.targets import Target

# The provider an observation names when the response cache answered.
CACHE_PROVIDER = "cache"


class Call:
    """Mutable per-request accounting, turned into the observation at the end."""

    __slots__ = (
        "attempts",
        "cache_hit",
        "cached_decision_id",
        "deployment",
        "error_class",
        "finish_reason",
        "first_token_at",
        "observation_id",
        "opened",
        "provider_s",
        "saved_cost_usd",
        "status",
        "target",
        "trace_id",
        "usage",
    )

    def __init__(self) -> None:
        self.attempts = 0
        self.cache_hit = False
        self.cached_decision_id = ""
        self.deployment: Deployment | None = None
        self.error_class = ""
        self.finish_reason = ""
        self.first_token_at = 0.0
        # A stream's observation is in the log from its start (id and log position), so a kill leaves one.
        self.observation_id = ""
        self.opened: int | None = None
        self.provider_s = 0.0
        self.saved_cost_usd = 0.0
        self.status = observations.ERROR
        self.target: Target | None = None
        self.trace_id = ""
        self.usage: chat_pb2.Usage | None = None


class Recorder:
    """Turns a finished call into metrics and an observation; built once per process."""

    def __init__(self, config: AtpConfig, shipper: ObservationShipper, replica_id: str) -> None:
        self._shipper = shipper
        self._replica_id = replica_id
        self._store_prompts = frozenset(t for t, cfg in config.tenants.items() if cfg.store_prompts)
        # Who gets PII redaction (stored prompts; forwarded messages on routes that ask), decided once.
        self.privacy = PrivacyPolicy(config)
        # Metrics label per tenant: configured tenants by name, everyone else shares one label.
        self._tenant_labels = {t: t for t in config.tenants}
        self._redactions: set[asyncio.Task[None]] = set()

    def finish(
        self,
        messages: Sequence[chat_pb2.ChatMessage],
        tenant: str,
        request_id: str,
        decision: chat_pb2.Decision,
        route_label: str,
        call: Call,
        started: float,
        started_wall: float,
        *,
        key_id: str = "",
        end_user: str = "",
        tags: Mapping[str, str] | None = None,
        dialect: str = "",
    ) -> None:
        """Count the call in the metrics and ship its observation (who asked, for whom, with what tags,
        through which dialect, and where it was served)."""
        latency_s = time.perf_counter() - started
        target = call.target
        model = target.model if target is not None else decision.candidates[0].model
        usage = call.usage or chat_pb2.Usage()
        cost = target.prices.cost(usage) if target is not None and call.usage is not None else 0.0
        ttft_s = call.first_token_at - started if call.first_token_at else 0.0
        self._count(tenant, route_label, model, call, usage, cost, latency_s, ttft_s)
        ner = tenant in self._store_prompts and self.privacy.uses_ner(tenant)
        observation = self._observation(
            messages,
            tenant,
            request_id,
            decision,
            call,
            model=model,
            usage=usage,
            cost=cost,
            latency_s=latency_s,
            ttft_s=ttft_s,
            store_prompt=tenant in self._store_prompts and not ner,
        )
        observation.key_id = key_id
        observation.end_user = end_user
        observation.dialect = dialect
        if tags:
            observation.tags.update(tags)
        if call.cache_hit:
            _mark_cache_hit(observation, call)
        observation.started_at.FromNanoseconds(int(started_wall * 1e9))
        observation.finished_at.FromNanoseconds(int((started_wall + latency_s) * 1e9))
        if ner:
            # The NER detector takes milliseconds: the observation leaves once its prompt is redacted.
            text = observations.prompt_text(messages)
            task = asyncio.get_running_loop().create_task(self._submit_redacted(observation, text, call))
            self._redactions.add(task)
            task.add_done_callback(self._redactions.discard)
            return
        self._shipper.submit(observation, call.opened)

    def _observation(
        self,
        messages: Sequence[chat_pb2.ChatMessage],
        tenant: str,
        request_id: str,
        decision: chat_pb2.Decision,
        call: Call,
        *,
        model: str,
        usage: chat_pb2.Usage,
        cost: float,
        latency_s: float,
        ttft_s: float,
        store_prompt: bool,
    ) -> observer_pb2.Observation:
        """What served the call, what it cost and how it went, with the prompt's digest (and the prompt,
        redacted by pattern, when `store_prompt`)."""
        deployment = call.deployment
        return observer_pb2.Observation(
            observation_id=call.observation_id or observations.new_observation_id(),
            request_id=request_id,
            tenant=tenant,
            decision=decision,
            model=model,
            provider=deployment.provider_name if deployment else decision.candidates[0].provider,
            deployment=deployment.name if deployment else "",
            region=deployment.region if deployment else "",
            prompt_hash=observations.prompt_hash(messages),
            prompt_text=self.privacy.for_storage(tenant)(observations.prompt_text(messages))
            if store_prompt
            else "",
            usage=usage,
            cost_usd=cost,
            latency_ms=latency_s * 1000.0,
            time_to_first_token_ms=ttft_s * 1000.0,
            provider_ms=call.provider_s * 1000.0,
            status=call.status,
            error_class=call.error_class,
            finish_reason=call.finish_reason,
            attempts=call.attempts,
            replica_id=self._replica_id,
            trace_id=call.trace_id,
        )

    def _count(
        self,
        tenant: str,
        route_label: str,
        model: str,
        call: Call,
        usage: chat_pb2.Usage,
        cost: float,
        latency_s: float,
        ttft_s: float,
    ) -> None:
        series = metrics.request_series(
            self._tenant_labels.get(tenant, metrics.OTHER_TENANT), route_label, model
        )
        status = call.status
        if status == observations.OK:
            series.ok.inc()
        elif status == observations.PARTIAL:
            series.partial.inc()
        elif status == observations.CANCELLED:
            series.cancelled.inc()
        else:
            series.error.inc()
        series.latency.observe(latency_s)
        series.overhead.observe(max(latency_s - call.provider_s, 0.0))
        if ttft_s:
            series.ttft.observe(ttft_s)
        if call.usage is not None:
            series.prompt_tokens.inc(usage.prompt_tokens)
            series.completion_tokens.inc(usage.completion_tokens)
            series.cached_tokens.inc(usage.cached_prompt_tokens)
            series.reasoning_tokens.inc(usage.reasoning_tokens)
            series.cost.inc(cost)

    async def _submit_redacted(self, observation: observer_pb2.Observation, text: str, call: Call) -> None:
        observation.prompt_text = await self.privacy.redact_for_storage(observation.tenant, text)
        self._shipper.submit(observation, call.opened)

    async def drain_redactions(self) -> None:
        """Wait for observations whose prompts are being redacted (at shutdown, before the shipper
        closes), then stop the detector."""
        if self._redactions:
            await asyncio.gather(*self._redactions, return_exceptions=True)
        self.privacy.close()


def _mark_cache_hit(observation: observer_pb2.Observation, call: Call) -> None:
    # No provider served it; learning must not count it as a pull of the model (policy "cache").
    observation.cache_hit = True
    observation.saved_cost_usd = call.saved_cost_usd
    observation.cached_decision_id = call.cached_decision_id
    observation.provider = CACHE_PROVIDER
    observation.decision.policy = CACHE_POLICY
