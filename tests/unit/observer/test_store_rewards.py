"""The reward model: proxy quality by outcome, and per-route penalties from the configuration."""

from __future__ import annotations

import pytest

from atp.observer.v1 import observer_pb2
from atp_common.config import builtin_config
from atp_observer.store import RewardModel, RewardWeights

Status = observer_pb2.ObservationStatus


@pytest.mark.parametrize(
    ("status", "finish_reason", "quality"),
    [
        (Status.OBSERVATION_STATUS_OK, "stop", 1.0),
        (Status.OBSERVATION_STATUS_OK, "tool_calls", 1.0),
        (Status.OBSERVATION_STATUS_OK, "", 1.0),
        (Status.OBSERVATION_STATUS_OK, "END_TURN", 1.0),
        (Status.OBSERVATION_STATUS_OK, "length", 0.5),
        (Status.OBSERVATION_STATUS_OK, "content_filter", 0.0),
        (Status.OBSERVATION_STATUS_OK, "something_new", 1.0),
        (Status.OBSERVATION_STATUS_ERROR, "", 0.0),
        (Status.OBSERVATION_STATUS_PARTIAL, "stop", 0.0),
        (Status.OBSERVATION_STATUS_UNSPECIFIED, "stop", 0.0),
        (Status.OBSERVATION_STATUS_CANCELLED, "stop", None),
    ],
)
def test_proxy_quality(status: int, finish_reason: str, quality: float | None) -> None:
    assert RewardModel.proxy_quality(status, finish_reason) == quality


def test_reward_subtracts_route_penalties() -> None:
    model = RewardModel({"auto": RewardWeights(cost_weight=2.0, latency_weight=0.1)})
    assert model.reward("auto", 1.0, 0.05, 1500.0) == pytest.approx(1.0 - 0.1 - 0.15)
    assert model.reward("unknown", 0.5, 100.0, 1e6) == 0.5


def test_from_config_reads_every_route() -> None:
    config = builtin_config("k").model_copy(deep=True)
    base = config.model_dump()
    base["routes"]["cheap"] = {"candidates": ["local-small"], "cost_weight": 3.0, "latency_weight": 0.25}
    model = RewardModel.from_config(type(config).model_validate(base))
    assert model.weights("cheap") == RewardWeights(3.0, 0.25)
    assert model.weights("auto") == RewardWeights(0.0, 0.0)
