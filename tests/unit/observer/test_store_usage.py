"""Usage grouped by key, end user, deployment and tag on SQLite and PostgreSQL, checked against sums of the
observations made here: counts and tokens exactly, costs exactly in nano-dollars."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_observer.store import Store
from tests.support.observations import ERROR, OK, make_obs

KEYS = ("key-a", "key-b", "key-c")
USERS = ("u1", "u2", "u3", "u4", "u5")
# Costs whose float sums depend on the order of addition, and one that lands on half a nano-dollar.
COSTS = (0.1, 0.2, 0.3, 1 / 3, 3.75e-8, 0.0012345678915, 2.5e-10, 0.0)


def _nanos(cost: float) -> int:
    return math.floor(cost * 1e9 + 0.5)


def _observations(count: int, base: datetime) -> list[observer_pb2.Observation]:
    rng = random.Random(7)
    made = []
    for i in range(count):
        obs = make_obs(
            tenant=rng.choice(("acme", "acme", "globex")),
            model=rng.choice(("small", "large")),
            cost_usd=rng.choice(COSTS),
            prompt_tokens=rng.randrange(1, 500),
            completion_tokens=rng.randrange(0, 300),
            status=ERROR if i % 9 == 0 else OK,
            started=base + timedelta(minutes=rng.randrange(0, 48 * 60)),
        )
        obs.key_id = rng.choice(KEYS)
        obs.end_user = rng.choice((*USERS, ""))
        obs.deployment = rng.choice(("eu-small", "us-small", ""))
        for name in rng.sample(("team", "env", "feature"), rng.randrange(0, 3)):
            obs.tags[name] = rng.choice(("x", "y"))
        made.append(obs)
    return made


def _expected(observations: list[observer_pb2.Observation], label) -> dict[object, tuple[int, int, int, int]]:
    """(requests, prompt tokens, completion tokens, cost in nano-dollars) per label(observation), which
    returns the labels the observation counts under."""
    sums: dict[object, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for obs in observations:
        for key in label(obs):
            row = sums[key]
            row[0] += 1
            row[1] += obs.usage.prompt_tokens
            row[2] += obs.usage.completion_tokens
            row[3] += _nanos(obs.cost_usd)
    return {key: tuple(values) for key, values in sums.items()}  # type: ignore[misc]


def _got(rows: list[observer_pb2.UsageRow], label) -> dict[object, tuple[int, int, int, int]]:
    got = {label(r): (r.requests, r.prompt_tokens, r.completion_tokens, r.cost_nano_usd) for r in rows}
    assert len(got) == len(rows)
    for row in rows:
        assert row.cost_usd == row.cost_nano_usd / 1e9
    return got


async def test_usage_by_key_user_deployment_and_tag_equals_the_observations(store: Store) -> None:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    made = _observations(600, base)
    for start in range(0, len(made), 100):
        await store.insert_observations(made[start : start + 100])
    acme = [obs for obs in made if obs.tenant == "acme"]

    rows = await store.query_usage("acme", None, None, ["key"])
    assert _got(rows, lambda r: r.key_id) == _expected(acme, lambda o: [o.key_id])
    rows = await store.query_usage("acme", None, None, ["user"])
    assert _got(rows, lambda r: r.end_user) == _expected(acme, lambda o: [o.end_user])
    rows = await store.query_usage("", None, None, ["tenant", "deployment", "model"])
    assert _got(rows, lambda r: (r.tenant, r.deployment, r.model)) == _expected(
        made, lambda o: [(o.tenant, o.deployment, o.model)]
    )
    # By tag: once under each of its tags; untagged observations under an empty tag.
    rows = await store.query_usage("acme", None, None, ["tag", "key"])
    assert _got(rows, lambda r: (r.tag_key, r.tag_value, r.key_id)) == _expected(
        acme, lambda o: [(k, v, o.key_id) for k, v in o.tags.items()] or [("", "", o.key_id)]
    )
    tagged = Counter(len(o.tags) for o in acme)
    assert tagged[0] and tagged[2], "the data must hold untagged and multi-tagged observations"

    # The total is the exact sum of every observation, whatever the grouping.
    (total,) = await store.query_usage("acme", None, None, [])
    assert _got([total], lambda r: "all") == _expected(acme, lambda o: ["all"])
    by_user = await store.query_usage("acme", None, None, ["user"])
    assert sum(r.cost_nano_usd for r in by_user) == total.cost_nano_usd
    assert sum(r.errors for r in by_user) == total.errors == sum(1 for o in acme if o.status == ERROR)


async def test_usage_by_user_per_day_over_a_range(store: Store) -> None:
    base = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    made = _observations(300, base)
    await store.insert_observations(made)
    start, end = base + timedelta(hours=12), base + timedelta(hours=36)
    rows = await store.query_usage("", start, end, ["user"], bucket_s=86_400)
    inside = [obs for obs in made if start <= obs.started_at.ToDatetime(tzinfo=UTC) < end]
    day = 86_400

    def bucket(obs: observer_pb2.Observation) -> int:
        return obs.started_at.seconds // day * day

    assert _got(rows, lambda r: (r.bucket_start.seconds, r.end_user)) == _expected(
        inside, lambda o: [(bucket(o), o.end_user)]
    )


@pytest.mark.parametrize("group_by", [["key", "nonsense"], ["keys"], ["day"]])
async def test_unknown_grouping_is_refused(store: Store, group_by: list[str]) -> None:
    with pytest.raises(InvalidArgument, match="cannot group usage by") as raised:
        await store.query_usage("acme", None, None, group_by)
    assert raised.value.param == "group_by"
