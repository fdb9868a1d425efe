"""The observer's gRPC server on the real PostgreSQL: ingest, idempotent resend, usage, feedback, rewards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_observer.server import build_server
from atp_observer.settings import ObserverSettings

pytestmark = pytest.mark.postgres
TIMEOUT = 10.0


def observation(tenant: str, n: int, model: str = "local-small") -> observer_pb2.Observation:
    obs = observer_pb2.Observation(
        observation_id=f"o-{tenant}-{n}",
        tenant=tenant,
        decision=chat_pb2.Decision(
            decision_id=f"d-{tenant}-{n}", route="auto", policy="static", propensity=1.0
        ),
        model=model,
        provider="local",
        usage=chat_pb2.Usage(prompt_tokens=10, completion_tokens=5),
        cost_usd=0.001,
        latency_ms=50.0,
        status=observer_pb2.OBSERVATION_STATUS_OK,
        finish_reason="stop",
    )
    obs.started_at.GetCurrentTime()
    return obs


async def test_observer_on_postgres_round_trip(postgres_dsn: str) -> None:
    settings = ObserverSettings(
        port=0,
        metrics_port=None,
        database_url=postgres_dsn,
        drain_delay_s=0.1,
        grace_s=2.0,
        rewards_poll_s=30.0,
    )
    running = await build_server(settings, config=builtin_config(""))
    channel = open_channel(running.address)
    stub = observer_pb2_grpc.ObserverServiceStub(channel)

    async def ingest(*batches: list[observer_pb2.Observation]) -> observer_pb2.IngestResponse:
        async def requests() -> AsyncIterator[observer_pb2.IngestRequest]:
            for batch in batches:
                yield observer_pb2.IngestRequest(observations=batch)

        return await stub.Ingest(requests(), timeout=TIMEOUT)

    try:
        acme = [observation("acme", i) for i in range(5)]
        reply = await ingest(acme[:3], acme[3:], [observation("globex", 0, "local-large")])
        assert (reply.stored, reply.duplicates) == (6, 0)
        again = await ingest(acme)
        assert (again.stored, again.duplicates) == (0, 5)

        usage = await stub.QueryUsage(
            observer_pb2.QueryUsageRequest(group_by=["tenant", "model"]), timeout=TIMEOUT
        )
        assert {(r.tenant, r.model, r.requests, r.prompt_tokens) for r in usage.rows} == {
            ("acme", "local-small", 5, 50),
            ("globex", "local-large", 1, 10),
        }
        listed = await stub.ListObservations(
            observer_pb2.ListObservationsRequest(tenant="globex"), timeout=TIMEOUT
        )
        assert [o.observation_id for o in listed.observations] == ["o-globex-0"]

        feedback = await stub.RecordFeedback(
            observer_pb2.RecordFeedbackRequest(decision_id="d-acme-0", tenant="acme", score=0.5),
            timeout=TIMEOUT,
        )
        assert feedback.joined

        # Six fresh rewards and one correction, read in two resumed pieces.
        events: list[observer_pb2.RewardEvent] = []
        cursor = 0
        for want in (4, 3):
            call = stub.WatchRewards(
                observer_pb2.WatchRewardsRequest(cursor=cursor, max_batch=want), timeout=TIMEOUT
            )
            response = await call.read()
            call.cancel()
            assert len(response.events) == want
            events.extend(response.events)
            cursor = response.events[-1].cursor
        assert len({e.cursor for e in events}) == 7
        assert events[-1].correction and events[-1].decision_id == "d-acme-0"

        stats = await stub.GetArmStats(observer_pb2.GetArmStatsRequest(route="auto"), timeout=TIMEOUT)
        small = next(a for a in stats.arms if a.model == "local-small" and not a.tenant)
        assert small.pulls == 5 and small.quality_sum == pytest.approx(4.5)
        assert stats.cursor == cursor

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetDecision(observer_pb2.GetDecisionRequest(decision_id="missing"), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()
        await running.stop_now()
