"""ATP as a platform team runs it: metrics on, a tenant with limits on the real Redis, PostgreSQL observations."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import urllib.parse
from pathlib import Path

from harness import BenchError, chat_body, post
from mock_upstream import MockUpstream
from targets import TARGETS, Atp, Target

REDIS_URL = os.environ.get("ATP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("ATP_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class AtpProduction(Atp):
    """ATP as a platform team runs it: metrics on, the bench tenant with request, token and budget limits
    on the real Redis (far above the load, so nothing is refused), observations to PostgreSQL."""

    name = "atp-production"
    # Limits no bench run reaches (about 2,000 req/s for a minute is 120,000): the cost of enforcing
    # them, not of refusing.
    LIMITS = {
        "requests_per_minute": 10_000_000,
        "tokens_per_minute": 10_000_000_000,
        "daily_budget_usd": 1_000_000.0,
    }

    def __init__(self, mock: MockUpstream, workers: int, logdir: Path) -> None:
        super().__init__(mock, workers, logdir)
        self.schema = "bench_atp_" + secrets.token_hex(4)
        self.redis_prefix = f"bench{secrets.token_hex(4)}:"

    def install(self) -> None:
        super().install()
        for host, port, what in (
            ("127.0.0.1", _port(REDIS_URL, 6379), "Redis"),
            ("127.0.0.1", _port(POSTGRES_DSN, 5432), "PostgreSQL"),
        ):
            try:
                socket.create_connection((host, port), 2).close()
            except OSError as exc:
                raise BenchError(f"{what} is not reachable at {host}:{port}: {exc}") from exc
        self._sql(f"CREATE SCHEMA {self.schema}")

    def settings(self) -> tuple[dict[str, float], dict[str, str], list[str]]:
        sep = "&" if "?" in POSTGRES_DSN else "?"
        return (
            dict(self.LIMITS),
            {
                "ATP_REDIS_URL": REDIS_URL,
                "ATP_ADAPTERS_REDIS_PREFIX": self.redis_prefix,
                "ATP_GATEWAY_REDIS_PREFIX": self.redis_prefix,
                "ATP_OBSERVER_DATABASE_URL": f"{POSTGRES_DSN}{sep}options=-csearch_path%3D{self.schema}",
            },
            [],
        )

    def start(self) -> None:
        super().start()
        url, headers = self.endpoint(False)
        status, reply_headers, _body = post(url, chat_body(False), headers)
        if status != 200 or reply_headers.get("x-ratelimit-limit-requests") != str(
            self.LIMITS["requests_per_minute"]
        ):
            raise BenchError(
                f"{self.name}: the tenant's limits are not enforced: HTTP {status} {reply_headers}"
            )
        self.description += f"; limits {self.LIMITS} on Redis, observations to PostgreSQL, metrics on"

    def stop(self) -> None:
        super().stop()
        try:
            self._sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        except BenchError as exc:
            print(f"bench: {exc}", flush=True)
        import redis  # the driver runs in ATP's venv, which has it

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        try:
            keys = list(client.scan_iter(f"{self.redis_prefix}*"))
            if keys:
                client.delete(*keys)
        except redis.RedisError as exc:
            print(f"bench: could not remove the run's Redis keys: {exc}", flush=True)
        finally:
            client.close()

    def _sql(self, statement: str) -> None:
        import asyncpg  # the driver runs in ATP's venv, which has it

        async def run() -> None:
            conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
            try:
                await conn.execute(statement, timeout=30)
            finally:
                await conn.close()

        try:
            asyncio.run(run())
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise BenchError(f"PostgreSQL: {statement}: {exc}") from exc


def _port(url: str, default: int) -> int:
    return urllib.parse.urlsplit(url).port or default


ALL_TARGETS: dict[str, type[Target]] = {**TARGETS, "atp-production": AtpProduction}
# The ATP configurations whose ratios to each peer the report prints.
ATP_TARGETS = ("atp", "atp-production")
