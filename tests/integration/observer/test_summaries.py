"""Observations sent with their summaries are stored exactly as those sent without, on both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_common.observation_summary import summary_of
from atp_observer.store import Store
from atp_observer.store.layout import EPOCH, OBSERVATION_COLUMNS, unpack_vector
from tests.support.observations import (
    CANCELLED,
    ERROR,
    PARTIAL,
    all_rewards,
    batch,
    make_obs,
    postgres_stores,
    sqlite_stores,
)

# Every column ingest writes, with the reward PostgreSQL keeps on the row and SQLite in its own table.
_SELECTED = ", ".join(OBSERVATION_COLUMNS)


class Backend:
    """Two empty databases of one backend, and their stored rows as plain values."""

    def __init__(self, name: str, stores: tuple[Callable[..., Store], Callable[..., Store]], where: Any):
        self.name = name
        self.stores = stores
        self._where = where

    async def rows(self, which: int) -> list[tuple[Any, ...]]:
        """The `observations` rows of database `which` (0 or 1), by observation id."""
        query = f"SELECT {_SELECTED} FROM observations ORDER BY observation_id"
        if self.name == "sqlite":
            with sqlite3.connect(self._where[which]) as conn:
                return [tuple(row) for row in conn.execute(query)]
        conn = await asyncpg.connect(self._where[which], timeout=10)
        try:
            return [tuple(row) for row in await conn.fetch(query, timeout=10)]
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def postgres(request: pytest.FixtureRequest) -> str:
    """The fixture's PostgreSQL DSN for the postgres backend, "" for SQLite."""
    return str(request.getfixturevalue("postgres_dsn")) if request.param == "postgres" else ""


@pytest.fixture
async def backend(postgres: str, tmp_path: Path) -> AsyncIterator[Backend]:
    if not postgres:
        paths = (tmp_path / "a" / "observer.sqlite3", tmp_path / "b" / "observer.sqlite3")
        for path in paths:
            path.parent.mkdir()
        yield Backend("sqlite", (sqlite_stores(paths[0].parent), sqlite_stores(paths[1].parent)), paths)
        return
    # A second schema beside the fixture's, for the second database.
    base, schema = postgres.split("search_path%3D")
    other = f"{schema}_b"
    conn = await asyncpg.connect(postgres, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {other}")
        dsns = (postgres, f"{base}search_path%3D{other}")
        yield Backend("postgres", (postgres_stores(dsns[0]), postgres_stores(dsns[1])), dsns)
    finally:
        await conn.execute(f"DROP SCHEMA {other} CASCADE")
        await conn.close()


def _columns(row: tuple[Any, ...]) -> dict[str, Any]:
    """A stored row's columns, in comparable form: features unpacked, tags parsed, the start as an instant
    (an integer count of microseconds on SQLite, a timestamp on PostgreSQL), the payload parsed."""
    values = dict(zip(OBSERVATION_COLUMNS, row, strict=True))
    values["features"] = unpack_vector(values["features"])
    values["tags"] = orjson.loads(values["tags"]) if values["tags"] is not None else {}
    started = values["started_at"]
    values["started_at"] = (
        started if isinstance(started, datetime) else EPOCH + timedelta(microseconds=started)
    )
    values["payload"] = observer_pb2.Observation.FromString(values["payload"])
    return values


def _expected(obs: observer_pb2.Observation) -> dict[str, Any]:
    """What each column must hold for `obs`, read from the observation field by field."""
    decision = obs.decision
    return {
        "observation_id": obs.observation_id,
        "decision_id": decision.decision_id,
        "tenant": obs.tenant,
        "route": decision.route,
        "model": obs.model,
        "policy": decision.policy,
        "propensity": decision.propensity,
        "features": pytest.approx(list(decision.features.vector)),
        "prompt_tokens": obs.usage.prompt_tokens,
        "completion_tokens": obs.usage.completion_tokens,
        "cost_usd": obs.cost_usd,
        "latency_ms": obs.latency_ms,
        "status": obs.status,
        "finish_reason": obs.finish_reason,
        "started_at": obs.started_at.ToDatetime(tzinfo=UTC),
        "key_id": obs.key_id,
        "end_user": obs.end_user,
        "deployment": obs.deployment,
        "tags": dict(obs.tags),
        "payload": obs,
    }


def varied() -> list[observer_pb2.Observation]:
    """Observations of every shape the adapters send: served, failed, partial, cancelled, undecided,
    attributed and tagged, without an end."""
    attributed = make_obs()
    attributed.key_id, attributed.end_user, attributed.deployment = "key-1", "user-7", "eu-small"
    attributed.tags.update({"team": "search", "env": "prod"})
    plain = make_obs()
    plain.ClearField("finished_at")
    return [
        make_obs(),
        make_obs(status=ERROR, finish_reason="", cost_usd=0.0),
        make_obs(status=PARTIAL, finish_reason="length"),
        make_obs(status=CANCELLED),
        make_obs(decision=False, route=""),
        make_obs(started=datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        attributed,
        plain,
    ]


async def test_summaries_and_derived_summaries_store_identical_rows(backend: Backend) -> None:
    observations = varied()
    with_summaries = batch(*observations, summaries=True)
    assert len(with_summaries.summaries) == len(observations)
    for which, request in enumerate((with_summaries, batch(*observations))):
        async with backend.stores[which]() as store:
            assert await store.insert_batches([request]) == [(len(observations), 0)]
            listed = await store.list_observations("acme", 100, None)
            assert sorted(listed, key=lambda o: o.observation_id) == sorted(
                observations, key=lambda o: o.observation_id
            )
            rewarded = {r.decision_id for r in await all_rewards(store)}
            assert rewarded == {
                o.decision.decision_id for o in observations if o.status != CANCELLED and o.decision.route
            }
            # A resend is a duplicate, with summaries or without.
            assert await store.insert_batches([batch(*observations[:2], summaries=True)]) == [(0, 2)]
            assert await store.insert_batches([batch(*observations[2:4])]) == [(0, 2)]
    from_summaries, derived = await backend.rows(0), await backend.rows(1)
    assert from_summaries == derived
    by_id = {obs.observation_id: obs for obs in observations}
    assert [_columns(row) for row in from_summaries] == [_expected(by_id[row[0]]) for row in from_summaries]


async def test_a_summary_that_does_not_name_its_observation_is_derived_again(backend: Backend) -> None:
    """The observations are the record: a summary of another observation, or without an id or a start,
    gives way to the one derived from its observation."""
    observations = varied()[:3]
    summaries = [summary_of(obs) for obs in observations]
    summaries[0].observation_id = observations[1].observation_id
    summaries[0].model = "not-what-was-served"
    summaries[1].ClearField("observation_id")
    summaries[2].ClearField("started_at_unix_micros")
    request = observer_pb2.IngestRequest(observations=observations, summaries=summaries)
    async with backend.stores[0]() as store:
        assert await store.insert_batches([request]) == [(3, 0)]
    async with backend.stores[1]() as store:
        assert await store.insert_batches([batch(*observations)]) == [(3, 0)]
    assert await backend.rows(0) == await backend.rows(1)


async def test_a_batch_whose_summaries_do_not_count_its_observations_is_derived(backend: Backend) -> None:
    observations = varied()[:3]
    wrong = summary_of(observations[0])
    wrong.cost_usd = 99.0
    request = observer_pb2.IngestRequest(observations=observations, summaries=[wrong])
    async with backend.stores[0]() as store:
        assert await store.insert_batches([request]) == [(3, 0)]
        (usage,) = await store.query_usage("acme", None, None, ["tenant"])
        assert usage.cost_usd == pytest.approx(sum(o.cost_usd for o in observations))


async def test_an_observation_without_id_or_start_is_refused_with_or_without_a_summary(
    backend: Backend,
) -> None:
    no_start = make_obs()
    no_start.ClearField("started_at")
    async with backend.stores[0]() as store:
        for request in (batch(no_start), batch(no_start, summaries=True)):
            with pytest.raises(InvalidArgument):
                await store.insert_batches([request])
