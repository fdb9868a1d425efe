"""How long each console page's admin API calls take with 100,000 observations in PostgreSQL, against the
300 ms budget, beside a bare HTTP round trip to the same gateway measured in the same run."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atp.common.v1 import chat_pb2  # noqa: E402
from atp.observer.v1 import observer_pb2  # noqa: E402
from atp_observer.store import PostgresStore, RewardModel  # noqa: E402
from tests.support.console_stack import ADMIN_KEY, running_suite  # noqa: E402

DEFAULT_DSN = os.environ.get("ATP_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BUDGET_MS = 300.0
TENANTS = ("acme", "globex", "ops")
MODELS = ("local-small", "local-large")
BATCH = 5000


def observation(i: int, now: datetime, days: int, rng: random.Random) -> observer_pb2.Observation:
    """One observation spread over the last `days` days, over three tenants, two models and two routes,
    one in twenty an error."""
    model = MODELS[i % 2]
    error = i % 20 == 0
    obs = observer_pb2.Observation(
        observation_id=f"bench-{i:08d}",
        request_id=f"req-{i}",
        tenant=TENANTS[i % 3],
        decision=chat_pb2.Decision(
            decision_id=f"dec-{i:08d}",
            route=("auto", "premium")[i % 5 == 0],
            policy="thompson",
            candidates=[chat_pb2.RankedCandidate(model=m, provider="local", score=0.5) for m in MODELS],
            propensity=0.5,
            explanation="bench",
            policy_version=1,
        ),
        model=model,
        provider="local",
        usage=chat_pb2.Usage(prompt_tokens=100 + i % 50, completion_tokens=40 + i % 30),
        cost_usd=0.0001 * (1 + i % 7),
        latency_ms=150.0 + i % 80,
        time_to_first_token_ms=40.0,
        status=observer_pb2.OBSERVATION_STATUS_ERROR if error else observer_pb2.OBSERVATION_STATUS_OK,
        finish_reason="" if error else "stop",
        attempts=0,
    )
    obs.started_at.FromDatetime(now - timedelta(seconds=rng.uniform(0, days * 86400)))
    return obs


async def fill(dsn: str, count: int, days: int) -> None:
    """`count` observations (and their reward events) through the observer's own store, plus feedback on
    one decision in a hundred."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    async with PostgresStore(dsn, 1, 4, reward_model=RewardModel({}), retention_days=days + 30) as store:
        for first in range(0, count, BATCH):
            batch = [observation(i, now, days, rng) for i in range(first, min(first + BATCH, count))]
            await store.insert_batches([observer_pb2.IngestRequest(observations=batch)])
        for i in range(0, count, 100):
            await store.record_feedback(
                observer_pb2.RecordFeedbackRequest(
                    decision_id=f"dec-{i:08d}", tenant=TENANTS[i % 3], score=0.8, source="bench"
                )
            )


def pages(since: int) -> dict[str, list[str]]:
    """The admin calls each page makes when it loads (the console sends a page's calls together)."""
    return {
        "spend, every tenant, by hour": [
            "/v1/admin/usage/series?tenant=*&bucket=hour&group_by=model",
            f"/v1/admin/usage?tenant=*&start={since}&group_by=model",
        ],
        "spend, one tenant, 30 days by day": [
            "/v1/admin/usage/series?tenant=acme&bucket=day&group_by=model",
            f"/v1/admin/usage?tenant=acme&start={since}&group_by=model",
            "/v1/admin/budgets?tenant=acme",
        ],
        "requests, latest 50": ["/v1/admin/observations?tenant=acme&limit=50"],
        "requests, filtered": [
            "/v1/admin/observations?tenant=acme&limit=50&model=local-large&route=premium&status=error"
        ],
        "request detail (feedback)": ["/v1/admin/decisions/dec-00000300/feedback?tenant=acme"],
        "routing": [
            "/v1/admin/routing",
            "/v1/admin/usage/series?tenant=*&bucket=hour&group_by=route,model",
        ],
        "keys and tenants": ["/v1/admin/keys", "/v1/admin/tenants/acme"],
        "health": ["/v1/admin/health"],
    }


def timed(pool: ThreadPoolExecutor, client: Callable[[str], httpx.Response], paths: list[str]) -> float:
    """Milliseconds until every call of a page has answered (sent together, as the browser does)."""
    started = time.perf_counter()
    for reply in pool.map(client, paths):
        reply.raise_for_status()
    return (time.perf_counter() - started) * 1000


def measure(url: str, rounds: int) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    since = int(time.time()) - 86400
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http, ThreadPoolExecutor(4) as pool:
        for paths in pages(since).values():
            timed(pool, http.get, paths)  # warm connections and plans
        baseline = [timed(pool, http.get, ["/livez"]) for _ in range(rounds)]
        base_p50 = statistics.median(baseline)
        print(
            f"{'page':38} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'x livez':>8}  within {BUDGET_MS:.0f} ms"
        )
        print(f"{'(baseline: GET /livez)':38} {base_p50:8.1f}")
        worst = 0.0
        for name, paths in pages(since).items():
            samples = sorted(timed(pool, http.get, paths) for _ in range(rounds))
            p50, p95 = statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]
            worst = max(worst, p95)
            verdict = "yes" if p95 <= BUDGET_MS else "NO"
            print(f"{name:38} {p50:8.1f} {p95:8.1f} {samples[-1]:8.1f} {p50 / base_p50:8.1f}  {verdict}")
        print(
            f"worst p95 {worst:.1f} ms: {'within' if worst <= BUDGET_MS else 'OVER'} the {BUDGET_MS:.0f} ms budget"
        )


async def fresh_schema(dsn: str) -> tuple[str, str]:
    schema = "console_bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    sep = "&" if "?" in dsn else "?"
    return schema, f"{dsn}{sep}options=-csearch_path%3D{schema}"


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dsn", default=DEFAULT_DSN, help="PostgreSQL to use (a fresh schema, dropped after)"
    )
    parser.add_argument("--observations", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30, help="Span the observations cover")
    parser.add_argument("--rounds", type=int, default=30, help="Loads of each page")
    args = parser.parse_args()
    schema, dsn = asyncio.run(fresh_schema(args.dsn))
    try:
        started = time.perf_counter()
        asyncio.run(fill(dsn, args.observations, args.days))
        print(
            f"stored {args.observations} observations over {args.days} days in {time.perf_counter() - started:.1f} s"
        )
        with tempfile.TemporaryDirectory() as tmp, running_suite(Path(tmp), dsn) as suite:
            measure(suite.url, args.rounds)
    finally:
        asyncio.run(drop_schema(args.dsn, schema))


if __name__ == "__main__":
    main()
