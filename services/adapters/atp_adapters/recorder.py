"""The end of every call: metrics, the observation (with the prompt digest or stored prompt) for the shipper."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_adapters import metrics, observations
from atp_adapters.shipper import ObservationShipper
from atp_common.config import AtpConfig
from atp_common.observation_rows import encode_row
from atp_common.privacy import PrivacyPolicy

if TYPE_CHECKING:
    from atp_adapters.pipeline import Target


class Call:
    """Mutable per-request accounting, turned into the observation at the end."""

    __slots__ = (
        "attempts",
        "error_class",
        "finish_reason",
        "first_token_at",
        "provider_s",
        "status",
        "target",
        "trace_id",
        "usage",
    )

    def __init__(self) -> None:
        self.attempts = 0
        self.error_class = ""
        self.finish_reason = ""
        self.first_token_at = 0.0
        self.provider_s = 0.0
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
        end_user: str = "",
        tags: Mapping[str, str] | None = None,
        dialect: str = "",
    ) -> None:
        """Count the call in the metrics and ship its observation (with who asked, its tags and dialect)."""
        now = time.perf_counter()
        latency_s = now - started
        target = call.target
        model = target.model if target is not None else decision.candidates[0].model
        usage = call.usage or chat_pb2.Usage()
        cost = target.prices.cost(usage) if target is not None and call.usage is not None else 0.0
        ttft_s = call.first_token_at - started if call.first_token_at else 0.0

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

        observation_id = observations.new_observation_id()
        latency_ms = latency_s * 1000.0
        started_ns = int(started_wall * 1e9)
        observation = observer_pb2.Observation(
            observation_id=observation_id,
            request_id=request_id,
            tenant=tenant,
            decision=decision,
            model=model,
            provider=target.provider_name if target is not None else decision.candidates[0].provider,
            prompt_hash=observations.prompt_hash(messages),
            prompt_text=self.privacy.for_storage(tenant)(observations.prompt_text(messages))
            if tenant in self._store_prompts
            else "",
            usage=usage,
            cost_usd=cost,
            latency_ms=latency_ms,
            time_to_first_token_ms=ttft_s * 1000.0,
            provider_ms=call.provider_s * 1000.0,
            status=status,
            error_class=call.error_class,
            finish_reason=call.finish_reason,
            attempts=call.attempts,
            replica_id=self._replica_id,
            trace_id=call.trace_id,
            end_user=end_user,
            dialect=dialect,
        )
        if tags:
            observation.tags.update(tags)
        observation.started_at.FromNanoseconds(started_ns)
        observation.finished_at.FromNanoseconds(int((started_wall + latency_s) * 1e9))
        # The observer's columns, from the values at hand (about 1 µs here), so that it need not read
        # them back out of the observation (several µs there, where every replica's observations meet).
        row = encode_row(
            observation_id=observation_id,
            decision=decision,
            tenant=tenant,
            model=model,
            usage=usage,
            cost_usd=cost,
            latency_ms=latency_ms,
            status=status,
            finish_reason=call.finish_reason,
            started_micros=started_ns // 1000,
        )
        self._shipper.submit(observation, row)
