"""Exactly-once ingest into real PostgreSQL through crashes: observer SIGKILL, database stop, observer away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from atp_adapters.shipper import ObservationShipper
from atp_adapters.spool import Spool
from atp_common.channels import open_channel
from tests.support.ingest_support import (
    SteadySource,
    assert_exactly_once,
    free_port,
    kill,
    print_log_tail,
    reward_counts,
    start_observer,
    stored_counts,
    stored_total,
    wait_until,
)
from tests.support.pg_cluster import PostgresCluster
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
# Each scenario's whole run, so that a stuck await fails with its traceback instead of hanging to the timeout.
SCENARIO_S = 60.0


def shipped(outcome: str) -> float:
    return REGISTRY.get_sample_value("atp_adapters_observations_total", {"outcome": outcome}) or 0.0


@contextlib.asynccontextmanager
async def shipper_to(port: int, spool_dir: Path) -> AsyncIterator[ObservationShipper]:
    """The adapters' real shipper and spool, tuned to notice an outage and its end within a fraction of a second."""
    channel = open_channel(f"127.0.0.1:{port}")
    shipper = ObservationShipper(
        channel,
        Spool(spool_dir, 1 << 28),
        queue_size=10_000,
        batch_size=100,
        interval_s=0.02,
        timeout_s=1.0,
        backoff_max_s=0.2,
    )
    shipper.start()
    try:
        yield shipper
    finally:
        # Bounded: a shipper that cannot close must fail the test, not hang it.
        async with asyncio.timeout(10):
            await shipper.close(2.0)
            await channel.close()


async def drained(shipper: ObservationShipper, dsn: str, sent: list[str]) -> None:
    """Wait until the shipper holds nothing (queue and spool) and the table has at least every sent row."""

    async def done() -> bool:
        return shipper.backlog == (0, 0) and await stored_total(dsn) >= len(sent)

    await wait_until(done, 20, f"{len(sent)} observations delivered")


async def test_observer_sigkill_mid_stream_then_restart_stores_every_observation_once(
    private_dsn: str, tmp_path: Path
) -> None:
    port = free_port()
    observer: ServiceProcess | None = start_observer(private_dsn, port)
    try:
        async with asyncio.timeout(SCENARIO_S), shipper_to(port, tmp_path / "spool") as shipper:
            spooled_before = shipped("spooled")
            source = SteadySource(shipper, "kill")
            source.start()
            try:
                await wait_until(lambda: _at_least(private_dsn, 300), 10, "ingest under way")
                kill(observer)  # mid-stream: batches are in flight, buffered or committed but unacknowledged
                at_kill = len(source.sent)
                # In a thread: the shipper and the load go on (against nobody) while the process starts.
                observer = await asyncio.to_thread(start_observer, private_dsn, port)
                await wait_until(lambda: _at_least(private_dsn, at_kill + 300), 15, "ingest resumed")
            finally:
                await source.stop()
            await drained(shipper, private_dsn, source.sent)
            assert shipped("spooled") > spooled_before, "the kill cut deliveries, which the spool then held"
        assert_exactly_once(source.sent, await stored_counts(private_dsn))
        assert_exactly_once([f"d-{i}" for i in source.sent], await reward_counts(private_dsn))
    except BaseException:
        print_log_tail(observer)
        raise
    finally:
        kill(observer)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_stopped_under_load_loses_and_duplicates_nothing(
    pg_cluster: PostgresCluster, private_dsn: str, tmp_path: Path, mode: str
) -> None:
    port = free_port()
    # A small buffer, so that through the outage the observer both buffers and pushes back to the spool.
    observer: ServiceProcess | None = start_observer(
        private_dsn,
        port,
        ATP_OBSERVER_BUFFER_OBSERVATIONS="1000",
        ATP_OBSERVER_MAX_BATCH_OBSERVATIONS="500",
        ATP_OBSERVER_BUFFER_WAIT_S="0.2",
    )
    try:
        async with asyncio.timeout(SCENARIO_S), shipper_to(port, tmp_path / "spool") as shipper:
            source = SteadySource(shipper, f"pg-{mode}")
            source.start()
            try:
                await wait_until(lambda: _at_least(private_dsn, 300), 10, "ingest under way")
                await asyncio.to_thread(pg_cluster.stop, mode)
                at_stop = len(source.sent)
                await asyncio.sleep(3.0)  # the outage itself: the load goes on against a stopped database
                assert len(source.sent) > at_stop + 500, "the load kept coming through the outage"
                await asyncio.to_thread(pg_cluster.start)
                at_start = len(source.sent)
                # Nothing restarts the observer or the shipper: both find the database again on their own,
                # and catch up with everything sent until now while the load goes on.
                await wait_until(lambda: _at_least(private_dsn, at_start), 15, "ingest resumed")
            finally:
                await source.stop()
            await drained(shipper, private_dsn, source.sent)
        assert observer.process.poll() is None, "the observer rode out the outage"
        errors = [line for line in observer.lines if line.get("level") in ("error", "critical")]
        assert not errors, f"an outage is expected, not an error: {errors[:3]}"
        assert_exactly_once(source.sent, await stored_counts(private_dsn))
        assert_exactly_once([f"d-{i}" for i in source.sent], await reward_counts(private_dsn))
    except BaseException:
        print_log_tail(observer)
        raise
    finally:
        kill(observer)
        if not pg_cluster.running:
            pg_cluster.start()


async def _at_least(dsn: str, count: int) -> bool:
    return await stored_total(dsn) >= count
