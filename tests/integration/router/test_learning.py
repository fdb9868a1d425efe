"""The router learning from a real observer: replicas converge on the reward log, and a restart resumes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import AtpConfig, builtin_config
from atp_common.server import RunningServer
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.arm_learning import PolicyLearner
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings

TIMEOUT = 10.0
MODELS = ("local-small", "local-large")


def config_with(policy: str) -> AtpConfig:
    raw = builtin_config("").model_dump()
    raw["routes"]["auto"] = {"candidates": list(MODELS), "policy": policy, "cost_weight": 1.0}
    return AtpConfig.model_validate(raw)


def observation(n: int, policy: str) -> observer_pb2.Observation:
    """Request n: the large model succeeds, the small one fails on every third request."""
    model = MODELS[n % 2]
    ok = model == "local-large" or n % 3 != 0
    vector = [1.0, (n % 5) / 5.0, float(n % 2)] + [0.0] * 9
    obs = observer_pb2.Observation(
        observation_id=f"o-{n}",
        tenant="acme",
        decision=chat_pb2.Decision(
            decision_id=f"d-{n}",
            route="auto",
            policy=policy,
            propensity=0.5,
            features=chat_pb2.RequestFeatures(vector=vector),
        ),
        model=model,
        provider="local",
        cost_usd=0.01 if model == "local-large" else 0.001,
        latency_ms=100.0,
        status=observer_pb2.OBSERVATION_STATUS_OK if ok else observer_pb2.OBSERVATION_STATUS_ERROR,
        finish_reason="stop" if ok else "",
    )
    obs.started_at.GetCurrentTime()
    return obs


class Observer:
    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self.channel = open_channel(running.address)
        self.stub = observer_pb2_grpc.ObserverServiceStub(self.channel)

    async def ingest(self, observations: list[observer_pb2.Observation]) -> None:
        async def requests() -> AsyncIterator[observer_pb2.IngestRequest]:
            yield observer_pb2.IngestRequest(observations=observations)

        # wait_for_ready: after a restart on the same port, gRPC's shared subchannel may still be backing off.
        reply = await self.stub.Ingest(requests(), timeout=TIMEOUT, wait_for_ready=True)
        assert reply.stored == len(observations)

    async def learned(self, config: AtpConfig) -> list[router_pb2.ArmState]:
        """The arms a learner fed the whole reward log, in order, ends with: what every router must reach."""
        learner = PolicyLearner(config)
        stats = await self.stub.GetArmStats(observer_pb2.GetArmStatsRequest(), timeout=TIMEOUT)
        call = self.stub.WatchRewards(observer_pb2.WatchRewardsRequest(cursor=0), timeout=TIMEOUT)
        cursor = 0
        try:
            while cursor < stats.cursor:
                response = await call.read()
                learner.apply_all(response.events)
                cursor = response.events[-1].cursor
        finally:
            call.cancel()
        return list(learner.export()["auto"].arms)


class Router:
    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self.channel = open_channel(running.address)
        self.stub = router_pb2_grpc.RouterServiceStub(self.channel)

    async def arms_when(
        self, accept: Callable[[list[router_pb2.ArmState]], bool]
    ) -> list[router_pb2.ArmState]:
        """The `auto` route's arms from the first pushed snapshot that `accept`s."""
        call = self.stub.WatchPolicy(router_pb2.WatchPolicyRequest(replica_id="test"), timeout=TIMEOUT)

        async def read() -> list[router_pb2.ArmState]:
            async for response in call:
                arms = list(next(r for r in response.snapshot.routes if r.name == "auto").arms)
                if accept(arms):
                    return arms
            raise AssertionError("the policy stream ended")

        try:
            return await asyncio.wait_for(read(), TIMEOUT)
        finally:
            call.cancel()

    async def close(self) -> None:
        await self.channel.close()
        await self.running.stop_now()


def pulls(total: int) -> Callable[[list[router_pb2.ArmState]], bool]:
    return lambda arms: sum(arm.pulls for arm in arms) == pytest.approx(total)


def assert_same(actual: list[router_pb2.ArmState], expected: list[router_pb2.ArmState], policy: str) -> None:
    if policy != "linucb":  # the router publishes the regression only for contextual routes
        expected = [router_pb2.ArmState(**{**_fields(e), "a_inv": [], "b": []}) for e in expected]
    assert [a.model for a in actual] == [e.model for e in expected]
    for a, e in zip(actual, expected, strict=True):
        for field in ("pulls", "reward_sum", "reward_sq_sum", "alpha", "beta", "mean_cost_usd"):
            assert getattr(a, field) == pytest.approx(getattr(e, field), rel=1e-9, abs=1e-12), (
                a.model,
                field,
            )
        assert list(a.a_inv) == pytest.approx(list(e.a_inv), rel=1e-9, abs=1e-12)
        assert list(a.b) == pytest.approx(list(e.b), rel=1e-9, abs=1e-12)


def _fields(arm: router_pb2.ArmState) -> dict[str, object]:
    return {f.name: v for f, v in arm.ListFields()}


@pytest.mark.parametrize("policy", ["thompson", "linucb"])
async def test_replicas_converge_and_a_restart_resumes(tmp_path: Path, policy: str) -> None:
    config = config_with(policy)
    observer = Observer(
        await build_observer(
            ObserverSettings(
                port=0, metrics_port=None, sqlite_path=str(tmp_path / "o.sqlite3"), rewards_poll_s=30.0
            ),
            config=config,
        )
    )
    router_settings = RouterSettings(
        port=0,
        metrics_port=None,
        config_path="",
        observer_addr=observer.running.address,
        reload_on_sighup=False,
        snapshot_min_interval_s=0.05,
        rewards_backoff_initial_s=0.05,
        drain_delay_s=0.0,
    )
    routers: list[Router] = []
    try:
        # Replica A learns from the start; replica B starts cold after the first rewards exist (thompson
        # seeds from the observer's aggregates, linucb replays the log), and late feedback corrects one.
        routers.append(Router(await build_router(router_settings, config=config)))
        await observer.ingest([observation(n, policy) for n in range(12)])
        routers.append(Router(await build_router(router_settings, config=config)))
        await observer.ingest([observation(n, policy) for n in range(12, 20)])
        feedback = await observer.stub.RecordFeedback(
            observer_pb2.RecordFeedbackRequest(decision_id="d-0", tenant="acme", score=0.9), timeout=TIMEOUT
        )
        assert feedback.joined

        expected = await observer.learned(config)
        assert sum(arm.pulls for arm in expected) == 20
        small = next(arm for arm in expected if arm.model == "local-small")
        for router in routers:
            arms = await router.arms_when(
                lambda arms: (
                    pulls(20)(arms)
                    and next(a for a in arms if a.model == "local-small").reward_sum
                    == pytest.approx(small.reward_sum)
                )
            )
            assert_same(arms, expected, policy)

        # Replica A stops; rewards keep coming; its restart picks up everything it missed.
        await routers.pop(0).close()
        await observer.ingest([observation(n, policy) for n in range(20, 26)])
        routers.append(Router(await build_router(router_settings, config=config)))
        expected = await observer.learned(config)
        for router in routers:
            assert_same(await router.arms_when(pulls(26)), expected, policy)
    finally:
        for router in routers:
            await router.close()
        await observer.channel.close()
        await observer.running.stop_now()


async def test_router_keeps_serving_while_the_observer_is_away(tmp_path: Path) -> None:
    config = config_with("thompson")
    observer_settings = ObserverSettings(port=0, metrics_port=None, sqlite_path=str(tmp_path / "o.sqlite3"))
    observer = Observer(await build_observer(observer_settings, config=config))
    port = observer.running.port
    router = Router(
        await build_router(
            RouterSettings(
                port=0,
                metrics_port=None,
                config_path="",
                observer_addr=observer.running.address,
                reload_on_sighup=False,
                snapshot_min_interval_s=0.05,
                rewards_backoff_initial_s=0.05,
                rewards_backoff_max_s=0.2,
            ),
            config=config,
        )
    )
    try:
        await observer.ingest([observation(n, "thompson") for n in range(4)])
        await router.arms_when(pulls(4))
        await observer.channel.close()
        await observer.running.stop_now()

        # No observer: routing goes on from the last learned state.
        reply = await router.stub.Route(
            router_pb2.RouteRequest(
                tenant="acme", model="auto", messages=[chat_pb2.ChatMessage(role="user", content="hi")]
            ),
            timeout=TIMEOUT,
        )
        assert reply.decision.policy == "thompson"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await router.stub.Explain(router_pb2.ExplainRequest(decision_id="d-0"), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE

        # The observer comes back on the same port and file: the stream reconnects and resumes.
        observer = Observer(
            await build_observer(observer_settings.model_copy(update={"port": port}), config=config)
        )
        await observer.ingest([observation(n, "thompson") for n in range(4, 7)])
        await router.arms_when(pulls(7))
        explained = await router.stub.Explain(router_pb2.ExplainRequest(decision_id="d-5"), timeout=TIMEOUT)
        assert explained.decision.decision_id == "d-5" and explained.tenant == "acme"
    finally:
        await router.close()
        await observer.channel.close()
        await observer.running.stop_now()
