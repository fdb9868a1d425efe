"""Sustained observation ingest into PostgreSQL through the observer's gRPC Ingest, beside a raw asyncpg COPY."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_adapters.settings import AdaptersSettings
from atp_adapters.shipper import INGEST_PATH, encode_observation
from atp_common.channels import open_channel
from atp_observer.store.layout import OBSERVATION_COLUMNS, observation_row
from atp_observer.store.pg_session import PG_EPOCH_MICROS, register_codecs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DSN = os.environ.get("ATP_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Measurement:
    """One timed load of `rows` observations."""

    method: str
    round: int
    rows: int
    seconds: float
    cpu_seconds: float  # of the observer process (ingest) or of this process (copy)

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds


def observations(prefix: str, count: int, started: datetime) -> list[observer_pb2.Observation]:
    """Observations shaped like the adapters' (a routed decision with features, usage, cost, timings)."""
    base = int(started.timestamp() * 1_000_000)
    result = []
    for i in range(count):
        obs = observer_pb2.Observation(
            observation_id=f"{prefix}-{i:08d}",
            request_id=f"req-{prefix}-{i}",
            tenant=f"tenant-{i % 16}",
            decision=chat_pb2.Decision(
                decision_id=f"dec-{prefix}-{i}",
                route="auto",
                policy="thompson",
                propensity=0.5,
                features=chat_pb2.RequestFeatures(
                    estimated_prompt_tokens=120 + i % 50,
                    stream=bool(i % 2),
                    # The kernel's context vector always has 12 entries (atp_common.policy.features).
                    vector=[1.0, 0.48, float(i % 2), 1.0, 0.0, 0.0, 0.0, 0.23, 0.0, 0.0, 0.0, 0.55],
                ),
            ),
            model=("local-small", "local-large")[i % 2],
            provider="local",
            prompt_hash=f"{i:064x}",
            usage=chat_pb2.Usage(prompt_tokens=120 + i % 50, completion_tokens=40 + i % 30),
            cost_usd=0.00012,
            latency_ms=180.0 + i % 40,
            time_to_first_token_ms=45.0,
            provider_ms=170.0,
            status=observer_pb2.OBSERVATION_STATUS_OK,
            finish_reason="stop",
            attempts=1,
            replica_id="adapters-0",
            # Who it was for, as the adapters record it on every request.
            key_id=f"key-{i % 3}",
            end_user=f"user-{i % 5}",
            deployment=("local-small", "local-large")[i % 2],
        )
        if i % 2:
            obs.tags["team"] = ("search", "ads")[i % 4 // 2]
        obs.started_at.FromMicroseconds(base + i)
        obs.finished_at.FromMicroseconds(base + i + 180_000)
        result.append(obs)
    return result


def start_observer(dsn: str, writers: int, pool: int) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m atp_observer` on a free port; returns once it logged ready, with its address."""
    env = {
        **os.environ,
        "ATP_CONFIG": "",
        "ATP_LOG_JSON": "true",
        "ATP_OBSERVER_DATABASE_URL": dsn,
        "ATP_OBSERVER_PORT": "0",
        "ATP_OBSERVER_METRICS_PORT": "0",
        "ATP_OBSERVER_DRAIN_DELAY_S": "0",
        "ATP_OBSERVER_WRITERS": str(writers),
        "ATP_OBSERVER_POOL_MAX_SIZE": str(pool),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "atp_observer"],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ready: dict[str, Any] = {}
    seen = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("event") == "ready" and not seen.is_set():
                ready.update(line)
                seen.set()
            elif isinstance(line, dict) and line.get("level") in ("warning", "error", "critical"):
                print(f"  observer {line.get('level')}: {line.get('event')}", file=sys.stderr)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 30
    while not seen.wait(0.05):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the observer did not become ready (exit {process.poll()})")
    return process, str(ready["address"])


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_ingest(
    address: str, observer_pid: int, batches: Sequence[bytes], expected: int, senders: int
) -> tuple[float, float]:
    """`senders` shippers, each sending one encoded IngestRequest per Ingest call and waiting for its ack,
    as the adapters' shipper does (it encodes each observation when it is submitted, off the clock here as
    the COPY rows' conversion is)."""
    channel = open_channel(address)
    try:
        ingest = channel.stream_unary(
            INGEST_PATH, request_serializer=None, response_deserializer=observer_pb2.IngestResponse.FromString
        )
        await channel.channel_ready()
        queue = iter(batches)
        stored = 0

        async def shipper() -> None:
            nonlocal stored
            for request in queue:
                reply = await ingest(iter((request,)), timeout=60)
                stored += reply.stored

        cpu = process_cpu_seconds(observer_pid)
        started = time.perf_counter()
        await asyncio.gather(*(shipper() for _ in range(senders)))
        elapsed = time.perf_counter() - started
        cpu = process_cpu_seconds(observer_pid) - cpu
    finally:
        await channel.close()
    if stored != expected:
        raise RuntimeError(f"ingest stored {stored} of {expected}: the bench rows must all be new")
    return elapsed, cpu


async def run_copy(
    pool: asyncpg.Pool, rows: Sequence[Sequence[tuple[Any, ...]]], senders: int
) -> tuple[float, float]:
    """The ceiling: the same rows, same batches and concurrency, COPY'd straight into an equivalent table."""
    queue = iter(rows)

    async def copier() -> None:
        async with pool.acquire() as conn:
            for batch in queue:
                await conn.copy_records_to_table(
                    "raw_observations", records=batch, columns=OBSERVATION_COLUMNS
                )

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(copier() for _ in range(senders)))
    return time.perf_counter() - started, time.process_time() - cpu


async def bench(args: argparse.Namespace) -> list[Measurement]:
    schema = "bench_ingest_" + secrets.token_hex(4)
    admin = await asyncpg.connect(args.dsn, timeout=10)
    await admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in args.dsn else "?"
    dsn = f"{args.dsn}{sep}options=-csearch_path%3D{schema}"
    observer: subprocess.Popen[bytes] | None = None
    pool: asyncpg.Pool | None = None
    measurements: list[Measurement] = []
    try:
        observer, address = start_observer(dsn, args.writers, max(args.writers, args.senders))
        # The store's own connection setup (timestamptz exchanged as integers), so COPY encodes exactly
        # what the store encodes.
        pool = await asyncpg.create_pool(
            dsn, min_size=args.senders, max_size=args.senders, timeout=10, init=register_codecs
        )
        day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        async with pool.acquire() as conn:
            # The same columns, keys, indexes and daily partitioning as the observer's table.
            await conn.execute(
                "CREATE TABLE raw_observations (LIKE observations INCLUDING ALL) PARTITION BY RANGE (started_at)"
            )
            await conn.execute(
                "CREATE TABLE raw_observations_today PARTITION OF raw_observations "
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
            )
        started = datetime.now(UTC).replace(microsecond=0)
        # Round 0 warms up (connections, pools, caches, the first partition pages) and is not counted.
        for round_ in range(args.rounds + 1):
            size = args.observations if round_ else min(args.observations, 10_000)
            data = observations(f"r{round_}", size, started + timedelta(seconds=round_))
            encoded = [encode_observation(obs) for obs in data]
            batches = [b"".join(encoded[i : i + args.batch]) for i in range(0, len(encoded), args.batch)]
            # The store's own conversion, done before the clock starts: COPY gets ready-made rows.
            converted = [observation_row(obs, PG_EPOCH_MICROS) for obs in data]
            rows = [converted[i : i + args.batch] for i in range(0, len(converted), args.batch)]
            # Alternate which goes first, so warm-up and table growth hit both alike.
            order = ("ingest", "copy") if round_ % 2 == 0 else ("copy", "ingest")
            for method in order:
                if method == "ingest":
                    seconds, cpu = await run_ingest(address, observer.pid, batches, len(data), args.senders)
                else:
                    seconds, cpu = await run_copy(pool, rows, args.senders)
                measurement = Measurement(method, round_, len(data), seconds, cpu)
                if round_ == 0:
                    continue
                measurements.append(measurement)
                print(
                    f"  round {round_}/{args.rounds} {method:6s} {measurement.per_second:10,.0f} obs/s "
                    f"({len(data):,} in {seconds:.2f} s, {1e6 * cpu / len(data):.1f} CPU ms per 1k obs)",
                    flush=True,
                )
    finally:
        if pool is not None:
            await pool.close()
        if observer is not None:
            observer.terminate()
            try:
                observer.wait(30)
            except subprocess.TimeoutExpired:
                observer.kill()
                observer.wait(10)
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    return measurements


def main() -> None:
    """Parse the arguments, run the rounds, print both rates and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dsn", default=DEFAULT_DSN, help="PostgreSQL; a fresh schema is created and dropped"
    )
    parser.add_argument("--observations", type=int, default=100_000, help="rows per method per round")
    parser.add_argument(
        "--batch",
        type=int,
        default=AdaptersSettings.model_fields["ship_batch_size"].default,
        help="observations per Ingest call (default: the shipper's, %(default)s)",
    )
    parser.add_argument("--senders", type=int, default=4, help="concurrent shippers (adapters replicas)")
    parser.add_argument("--writers", type=int, default=4, help="observer batch writers (its default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "ingest.json")
    args = parser.parse_args()

    print(
        f"ingest bench: {args.observations:,} observations x {args.rounds} rounds, batches of {args.batch}, "
        f"{args.senders} senders, {args.writers} observer writers",
        flush=True,
    )
    measurements = asyncio.run(bench(args))
    ingest = statistics.median(m.per_second for m in measurements if m.method == "ingest")
    copy = statistics.median(m.per_second for m in measurements if m.method == "copy")
    print(f"gRPC Ingest -> observer -> PostgreSQL : {ingest:10,.0f} observations/s (median of rounds)")
    print(f"raw asyncpg COPY, same rows           : {copy:10,.0f} observations/s (median of rounds)")
    print(f"ratio ingest / COPY                   : {ingest / copy:10.2f} (aim >= 0.5)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "ingest_per_s": ingest,
                "copy_per_s": copy,
                "ratio": ingest / copy,
                "measurements": [asdict(m) | {"per_second": m.per_second} for m in measurements],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
