"""Per-request CPU of the hot path's bookkeeping: Prometheus metrics as the services record them, and admission
against a limited tenant from a lease, through Redis, or with no limits (`--redis` for the store)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from atp_adapters.limits import Limiter, RedisBackend
from atp_common.config import TenantConfig
from atp_common.limits import compile_limits
from atp_common.metrics import LATENCY_BUCKETS


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """CPU microseconds per call of `fn`, the best of three runs of `n` calls."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def metric_costs(n: int) -> dict[str, float]:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["a", "b"], registry=registry)
    histogram = Histogram("h", "h", ["a"], buckets=LATENCY_BUCKETS, registry=registry)
    child, hchild = counter.labels("x", "y"), histogram.labels("x")
    costs = {
        "Counter.labels(...).inc() per call": per_call_us(lambda: counter.labels("x", "y").inc(), n),
        "bound counter .inc()": per_call_us(child.inc, n),
        "bound histogram .observe()": per_call_us(lambda: hchild.observe(0.0123), n),
        "dict lookup of a bound child": per_call_us(lambda: {("x", "y"): child}.get(("x", "y")), n),
    }
    counters = [Counter(f"r{i}", "r", registry=registry) for i in range(16)]
    histograms = [Histogram(f"s{i}", "s", buckets=LATENCY_BUCKETS, registry=registry) for i in range(4)]

    def request(incs: int, observes: int) -> Callable[[], None]:
        def run() -> None:
            for c in counters[:incs]:
                c.inc()
            for h in histograms[:observes]:
                h.observe(0.0123)

        return run

    # What one request records, counted in the code: see the design notes' "Metrics on the hot path".
    costs["adapters, non-streamed (8 incs, 3 observes)"] = per_call_us(request(8, 3), n)
    costs["adapters, streamed (8 incs, 4 observes)"] = per_call_us(request(8, 4), n)
    costs["gateway (3 incs or gauge moves, 3 observes)"] = per_call_us(request(3, 3), n)
    return costs


async def admission_costs(redis_url: str, n: int) -> dict[str, float]:
    limits = compile_limits(
        "bench",
        TenantConfig(requests_per_minute=10**9, tokens_per_minute=10**12, daily_budget_usd=10**6),
    )
    costs: dict[str, float] = {}
    for name, lease in (("leased (32)", 32), ("one Redis call per request", 0)):
        limiter = Limiter(RedisBackend(redis_url), prefix=f"hot{secrets.token_hex(4)}:", lease_requests=lease)
        limiter.start()
        try:
            for _ in range(200):
                limiter.settle(
                    await limiter.admit(limits, tokens=50, cost_usd=1e-5), tokens=40, cost_usd=8e-6
                )
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(n):
                ticket = await limiter.admit(limits, tokens=50, cost_usd=1e-5)
                limiter.settle(ticket, tokens=40, cost_usd=8e-6)
            costs[f"admit + settle, {name}: CPU"] = (time.process_time() - cpu) / n * 1e6
            costs[f"admit + settle, {name}: wall"] = (time.perf_counter() - wall) / n * 1e6
        finally:
            await limiter.close()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--redis", default=os.environ.get("ATP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    results = metric_costs(args.n)
    results |= asyncio.run(admission_costs(args.redis, max(args.n // 10, 500)))
    for what, us in results.items():
        print(f"{what:<55} {us:8.2f} µs")


if __name__ == "__main__":
    main()
