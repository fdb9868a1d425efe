"""Read the observer's logged reward events (every decision with its features, propensity and outcome)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.policy.kernel import DIRECT_POLICY

_BATCH = 1000


async def read_reward_events(
    address: str, route: str, *, timeout_s: float = 30.0
) -> list[observer_pb2.RewardEvent]:
    """Every reward event of `route` logged so far (WatchRewards from the start up to GetArmStats' cursor)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = observer_pb2_grpc.ObserverServiceStub(channel)
        end = (await stub.GetArmStats(observer_pb2.GetArmStatsRequest(), timeout=timeout_s)).cursor
        events: list[observer_pb2.RewardEvent] = []
        if end <= 0:
            return events
        call = stub.WatchRewards(
            observer_pb2.WatchRewardsRequest(cursor=0, max_batch=_BATCH), timeout=timeout_s
        )
        try:
            async for response in call:
                events.extend(e for e in response.events if e.route == route)
                if response.events and response.events[-1].cursor >= end:
                    break
        finally:
            call.cancel()
        return events


@dataclass(frozen=True, slots=True)
class LoggedOutcome:
    """One logged decision's final outcome (late feedback applied)."""

    features: tuple[float, ...]
    model: str
    propensity: float
    reward: float
    quality: float


def outcomes(events: list[observer_pb2.RewardEvent]) -> list[LoggedOutcome]:
    """One outcome per decision, corrections replacing the reward and quality; direct calls skipped."""
    by_decision: dict[str, LoggedOutcome] = {}
    for event in events:
        if event.propensity <= 0 or event.policy == DIRECT_POLICY:
            continue
        previous = by_decision.get(event.decision_id)
        if previous is None and not event.correction:
            by_decision[event.decision_id] = LoggedOutcome(
                tuple(event.features), event.model, event.propensity, event.reward, event.quality
            )
        elif previous is not None and event.correction:
            by_decision[event.decision_id] = LoggedOutcome(
                previous.features, previous.model, previous.propensity, event.reward, event.quality
            )
    return list(by_decision.values())
