"""The producer's rows beside the observations: stored exactly as the observations would be, else ignored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from atp.observer.v1 import observer_pb2
from atp_common.observation_rows import row_of
from atp_observer.store import Store
from atp_observer.store.layout import batch_values, observation_values
from atp_observer.store.pg_session import PG_EPOCH_MICROS
from tests.support.observations import (
    CANCELLED,
    ERROR,
    PARTIAL,
    REWARDS,
    all_rewards,
    batch,
    make_obs,
    postgres_stores,
    sqlite_stores,
)


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Store]:
    """Stores of both backends: the rows must decode the same on each."""
    if request.param == "postgres":
        return postgres_stores(request.getfixturevalue("postgres_dsn"))
    return sqlite_stores(tmp_path)


@pytest.fixture
async def store(make_store: Callable[..., Store]) -> AsyncIterator[Store]:
    async with make_store() as opened:
        yield opened


def varied() -> list[observer_pb2.Observation]:
    """Observations of every shape the adapters send: served, failed, partial, cancelled, undecided."""
    plain = make_obs()
    plain.ClearField("finished_at")
    return [
        make_obs(),
        make_obs(status=ERROR, finish_reason="", cost_usd=0.0),
        make_obs(status=PARTIAL, finish_reason="length"),
        make_obs(status=CANCELLED),
        make_obs(decision=False, route=""),
        make_obs(started=datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        plain,
    ]


@pytest.mark.parametrize("epoch", [0, PG_EPOCH_MICROS])
def test_rows_decode_to_exactly_what_the_observations_give(epoch: int) -> None:
    observations = varied()
    from_rows = batch_values(batch(*observations, rows=True), epoch)
    assert from_rows == [observation_values(obs, epoch) for obs in observations]
    assert from_rows == batch_values(batch(*observations), epoch)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda rows: rows[:-1],  # one row missing
        lambda rows: [b"not json", *rows[1:]],
        lambda rows: [b"{}", *rows[1:]],  # not an array
        lambda rows: [orjson.dumps(orjson.loads(rows[0])[:-1]), *rows[1:]],  # a field short
        lambda rows: [
            orjson.dumps([*orjson.loads(rows[0])[:7], "zz", *orjson.loads(rows[0])[8:]]),
            *rows[1:],
        ],
        lambda rows: [orjson.dumps(["", *orjson.loads(rows[0])[1:]]), *rows[1:]],  # no observation id
    ],
    ids=["count", "json", "object", "short", "vector", "no-id"],
)
def test_rows_that_do_not_fit_are_ignored_for_the_observations(spoil) -> None:
    observations = varied()
    request = batch(*observations)
    request.rows.extend(spoil([row_of(obs) for obs in observations]))
    assert batch_values(request) == [observation_values(obs) for obs in observations]


async def test_a_batch_sent_with_rows_is_stored_as_without(store: Store) -> None:
    observations = varied()
    assert await store.insert_batches([batch(*observations, rows=True)]) == [(len(observations), 0)]
    listed = await store.list_observations("acme", 100, None)
    assert sorted(listed, key=lambda o: o.observation_id) == sorted(
        observations, key=lambda o: o.observation_id
    )
    rewarded = {r.decision_id for r in await all_rewards(store)}
    # Rewards for the decided, not cancelled ones, with the row's values.
    assert rewarded == {
        o.decision.decision_id for o in observations if o.status != CANCELLED and o.decision.route
    }
    # A resend with rows is a duplicate, as without.
    assert await store.insert_batches([batch(*observations[:2], rows=True)]) == [(0, 2)]


async def test_rows_the_table_refuses_fall_back_to_the_observations(store: Store) -> None:
    """A row whose value the database refuses (NULL for a number) does not fail the batch: the
    observations are the record, and they are stored from them."""
    good = make_obs(started=datetime.now(UTC) - timedelta(minutes=1))
    spoiled = orjson.loads(row_of(good))
    spoiled[10] = None  # cost_usd
    request = batch(good)
    request.rows.append(orjson.dumps(spoiled))
    assert await store.insert_batches([request]) == [(1, 0)]
    (stored,) = await store.list_observations("acme", 10, None)
    assert stored == good
    (usage,) = await store.query_usage("acme", None, None, ["tenant"])
    assert usage.cost_usd == pytest.approx(good.cost_usd)


@pytest.mark.postgres
async def test_postgres_rows_of_the_wrong_type_fall_back_to_the_observations(postgres_dsn: str) -> None:
    from atp_observer.store import PostgresStore

    good = make_obs()
    spoiled = orjson.loads(row_of(good))
    spoiled[8] = "many"  # prompt_tokens
    request = batch(good)
    request.rows.append(orjson.dumps(spoiled))
    async with PostgresStore(postgres_dsn, 1, 2, reward_model=REWARDS) as store:
        assert await store.insert_batches([request]) == [(1, 0)]
        (usage,) = await store.query_usage("acme", None, None, ["tenant"])
        assert usage.prompt_tokens == good.usage.prompt_tokens
