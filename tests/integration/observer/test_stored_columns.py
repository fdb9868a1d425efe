"""Each stored column holds its observation's field as the observer reads it, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from atp.observer.v1 import observer_pb2
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

_SELECTED = ", ".join(OBSERVATION_COLUMNS)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database under test: a PostgreSQL DSN, or a SQLite file's path."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_dsn"))
    return str(tmp_path / "observer.sqlite3")


def _open(database: str) -> Store:
    if database.startswith("postgresql://"):
        return postgres_stores(database)()
    return sqlite_stores(Path(database).parent)()


async def _stored_rows(database: str) -> list[tuple[Any, ...]]:
    """The `observations` rows as the database holds them, by observation id."""
    query = f"SELECT {_SELECTED} FROM observations ORDER BY observation_id"
    if not database.startswith("postgresql://"):
        with sqlite3.connect(database) as conn:
            return [tuple(row) for row in conn.execute(query)]
    conn = await asyncpg.connect(database, timeout=10)
    try:
        return [tuple(row) for row in await conn.fetch(query, timeout=10)]
    finally:
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


async def test_every_column_holds_its_observations_field(database: str) -> None:
    observations = varied()
    async with _open(database) as store:
        assert await store.insert_batches([batch(*observations)]) == [(len(observations), 0)]
        listed = await store.list_observations("acme", 100, None)
        assert sorted(listed, key=lambda o: o.observation_id) == sorted(
            observations, key=lambda o: o.observation_id
        )
        rewarded = {r.decision_id for r in await all_rewards(store)}
        assert rewarded == {
            o.decision.decision_id for o in observations if o.status != CANCELLED and o.decision.route
        }
        # A resend is a duplicate.
        assert await store.insert_batches([batch(*observations[:2])]) == [(0, 2)]
    rows = await _stored_rows(database)
    by_id = {obs.observation_id: obs for obs in observations}
    assert [_columns(row) for row in rows] == [_expected(by_id[row[0]]) for row in rows]
    assert len(rows) == len(observations)


async def test_an_observation_without_id_or_start_is_left_out_alone(database: str) -> None:
    no_start = make_obs()
    no_start.ClearField("started_at")
    no_id = make_obs()
    no_id.ClearField("observation_id")
    kept = make_obs()
    async with _open(database) as store:
        assert await store.insert_batches([batch(no_start, kept, no_id)]) == [(1, 0)]
    assert [row[0] for row in await _stored_rows(database)] == [kept.observation_id]
