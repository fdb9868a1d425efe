"""The ingest buffer: batches waiting together are committed together, and a bad one fails only itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.config import builtin_config
from atp_common.errors import InvalidArgument
from atp_observer.ingest import IngestBuffer
from atp_observer.store import RewardModel, SqliteStore


def observation(tenant: str, n: int) -> observer_pb2.Observation:
    """A routed, successful observation of `tenant`, numbered `n`."""
    obs = observer_pb2.Observation(
        observation_id=f"o-{tenant}-{n}",
        tenant=tenant,
        decision=chat_pb2.Decision(
            decision_id=f"d-{tenant}-{n}", route="auto", policy="static", propensity=1.0
        ),
        model="local-small",
        status=observer_pb2.OBSERVATION_STATUS_OK,
        finish_reason="stop",
    )
    obs.started_at.GetCurrentTime()
    return obs


class RecordingStore(SqliteStore):
    """The real SQLite store, remembering the batch sizes of every write it was asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, reward_model=RewardModel.from_config(builtin_config("")))
        self.writes: list[list[int]] = []

    async def insert_batches(self, batches: Sequence[observer_pb2.IngestRequest]) -> list[tuple[int, int]]:
        self.writes.append([len(batch.observations) for batch in batches])
        # A batch the store cannot take as a whole (the real store leaves a bad observation out alone).
        if any(obs.observation_id == "refused" for batch in batches for obs in batch.observations):
            raise InvalidArgument("refused batch")
        return await super().insert_batches(batches)


def buffer_for(store: SqliteStore, merge_observations: int) -> IngestBuffer:
    return IngestBuffer(
        store,
        capacity=100,
        writers=1,
        wait_s=1.0,
        retry_initial_s=0.01,
        retry_max_s=0.05,
        merge_observations=merge_observations,
    )


async def test_waiting_batches_share_one_transaction_up_to_the_merge_bound(tmp_path: Path) -> None:
    async with RecordingStore(tmp_path / "observer.sqlite3") as store:
        buffer = buffer_for(store, merge_observations=5)
        a = [observation("acme", i) for i in range(2)]
        b = [observation("acme", 2), a[0]]  # a[0] again: a duplicate within the merged write
        c = [observation("acme", i) for i in range(3, 6)]
        # Queued before any writer runs, as batches pile up behind a busy or absent database.
        futures = [await buffer.submit(observer_pb2.IngestRequest(observations=batch)) for batch in (a, b, c)]
        buffer.start()
        try:
            results = await asyncio.wait_for(asyncio.gather(*futures), 10)
        finally:
            await buffer.close(5)
        assert results == [(2, 0), (1, 1), (3, 0)]
        # a and b (4 observations) fit the bound of 5 together; c would not, so it goes next, alone.
        assert store.writes == [[2, 2], [3]]
        assert len(await store.rewards_after(0, 100)) == 6


async def test_a_bad_batch_in_a_merged_write_fails_alone(tmp_path: Path) -> None:
    async with RecordingStore(tmp_path / "observer.sqlite3") as store:
        buffer = buffer_for(store, merge_observations=100)
        good = [observation("acme", 0)]
        bad = [observer_pb2.Observation(observation_id="refused", tenant="acme")]
        later = [observation("acme", 1), observation("acme", 2)]
        futures = [
            await buffer.submit(observer_pb2.IngestRequest(observations=batch))
            for batch in (good, bad, later)
        ]
        buffer.start()
        try:
            _, pending = await asyncio.wait(futures, timeout=10)
        finally:
            await buffer.close(5)
        assert not pending
        assert futures[0].result() == (1, 0) and futures[2].result() == (2, 0)
        with pytest.raises(InvalidArgument):
            futures[1].result()
        # Together first (refused as a whole, nothing stored), then each on its own.
        assert store.writes == [[1, 1, 2], [1], [1], [2]]
        assert buffer.depth == 0
