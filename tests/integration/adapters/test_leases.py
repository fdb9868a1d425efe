"""Leased admission on the real Redis with two replicas: far from a limit most admissions cost no round trip,
the counts stay exact, and a replica killed with a lease, a Redis restart and a lowered limit behave as the
design notes ("Leased admission") state."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as redis

from atp_adapters.limits import Limiter, RedisBackend
from atp_adapters.limits.backends import StoreUnavailable
from atp_common.config import TenantConfig, builtin_config
from atp_common.errors import RateLimited, Unavailable
from atp_common.limits import compile_limits
from atp_common.limits.directory import DirectoryFollower, RedisDirectoryStore

# These tests count admissions, not time: bursts of 100 near a limit wait for the pool's connections, and
# on a loaded machine that wait can outlast the production timeout (0.25 s) and fail the store call.
PATIENT_S = 2.0


class CountingRedis(RedisBackend):
    """The real Redis backend, counting the admission calls it makes (what leases are there to save)."""

    def __init__(self, url: str, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self.calls = 0

    async def admit(self, *args, **kwargs):
        self.calls += 1
        return await super().admit(*args, **kwargs)


def _prefix() -> str:
    return f"t{secrets.token_hex(6)}:"


async def _admit_many(limiters: list[Limiter], limits, count: int, **amounts) -> int:
    """`count` concurrent admissions spread over `limiters`; how many were admitted."""

    async def one(i: int) -> bool:
        try:
            await limiters[i % len(limiters)].admit(limits, **amounts)
        except RateLimited:
            return False
        return True

    return sum(await asyncio.gather(*(one(i) for i in range(count))))


async def _counter(url: str, key: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(await client.get(key) or 0)
    finally:
        await client.aclose()


async def test_far_from_the_limit_admissions_spend_leases_and_the_count_stays_exact(redis_url):
    prefix = _prefix()
    backends = [CountingRedis(redis_url, timeout_s=PATIENT_S), CountingRedis(redis_url, timeout_s=PATIENT_S)]
    limiters = [Limiter(b, prefix=prefix, lease_requests=32) for b in backends]
    for limiter in limiters:
        limiter.start()
    limits = compile_limits("acme", TenantConfig(requests_per_minute=1000, tokens_per_minute=10_000_000))
    try:
        # Sequential on each replica, as a steady stream: most admissions come from a lease.
        for _ in range(200):
            for limiter in limiters:
                await limiter.admit(limits, tokens=10)
        assert sum(b.calls for b in backends) <= 40, [b.calls for b in backends]
        # Concurrent bursts past the limit: exactly the limit in all, leases near it are declined.
        admitted = [await _admit_many(limiters, limits, 100, tokens=10) for _ in range(8)]
        assert 400 + sum(admitted) == 1000, admitted
        # Leases returned (expired, swept) and settlements applied: the counter is what was admitted.
        await asyncio.sleep(1.6)
        for limiter in limiters:
            await limiter.flush()
        assert await _counter(redis_url, f"{prefix}{{acme}}:rm") == 1000
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_unspent_leases_return_on_close(redis_url):
    prefix = _prefix()
    limiter = Limiter(RedisBackend(redis_url, timeout_s=PATIENT_S), prefix=prefix, lease_requests=32)
    limits = compile_limits("acme", TenantConfig(requests_per_minute=1000))
    for _ in range(5):
        await limiter.admit(limits)
    assert await _counter(redis_url, f"{prefix}{{acme}}:rm") == 33  # one request and a lease of 32
    await limiter.close()
    assert await _counter(redis_url, f"{prefix}{{acme}}:rm") == 5


class SlowRedis(RedisBackend):
    """The real backend with a round trip that takes 50 ms, as under load or across a region, counting its
    calls as they start; `down` makes each call fail as an unreachable store does."""

    def __init__(self, url: str, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self.calls = 0
        self.down = False

    async def admit(self, *args, **kwargs):
        self.calls += 1
        await asyncio.sleep(0.05)
        if self.down:
            raise StoreUnavailable("connection refused")
        return await super().admit(*args, **kwargs)


async def test_the_next_lease_is_asked_for_early_so_admissions_do_not_wait_for_the_store(redis_url):
    prefix = _prefix()
    backend = SlowRedis(redis_url)
    limiter = Limiter(backend, prefix=prefix, lease_requests=8)
    limits = compile_limits("acme", TenantConfig(requests_per_minute=10_000))
    key = f"{prefix}{{acme}}:rm"
    try:
        await limiter.admit(limits)  # one request and a lease of 8
        assert await _counter(redis_url, key) == 9
        # Seven from the lease leave one: the seventh asks for the next lease, and none waits for it.
        started = time.monotonic()
        for _ in range(7):
            await limiter.admit(limits)
        assert time.monotonic() - started < 0.04
        await asyncio.sleep(0)  # the renewal's task starts at the loop's next turn
        assert backend.calls == 2
        await asyncio.sleep(0.1)
        # The next lease is in: both counted as used until the first one's rest (1) goes back.
        assert await _counter(redis_url, key) == 1 + 8 + 8
        for _ in range(5):
            await limiter.admit(limits)
        assert backend.calls == 2
        await limiter.flush()
        # Every rest returned (the replaced lease's and the current one's): the count is what was admitted.
        assert await _counter(redis_url, key) == 13
    finally:
        await limiter.close()


async def test_an_early_renewal_that_fails_leaves_admission_to_the_store_as_before(redis_url):
    prefix = _prefix()
    backend = SlowRedis(redis_url)
    limiter = Limiter(backend, prefix=prefix, lease_requests=8, fail_mode="closed")
    limits = compile_limits("acme", TenantConfig(requests_per_minute=10_000))
    try:
        await limiter.admit(limits)
        backend.down = True  # the store goes away: the early renewal fails
        for _ in range(8):
            await limiter.admit(limits)  # the lease still admits
        await asyncio.sleep(0)
        assert backend.calls == 2
        await asyncio.sleep(0.1)
        # The lease is spent: the next admission asks the store itself and fails closed, as before.
        with pytest.raises(Unavailable):
            await limiter.admit(limits)
        assert backend.calls == 3 and not limiter.healthy
    finally:
        await limiter.close(timeout_s=0.5)


_CHILD = """
import asyncio, sys
from atp_common.config import TenantConfig
from atp_adapters.limits import Limiter, RedisBackend
from atp_adapters.limits.backends import StoreUnavailable
from atp_common.limits import compile_limits

async def main():
    limiter = Limiter(RedisBackend(sys.argv[1], timeout_s=float(sys.argv[3])), prefix=sys.argv[2], lease_requests=32)
    limits = compile_limits("acme", TenantConfig(requests_per_minute=400))
    for _ in range(10):
        await limiter.admit(limits)
    print("holding", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_replica_killed_with_a_lease_loses_at_most_its_unspent_lease_never_overadmits(redis_url):
    prefix = _prefix()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        redis_url,
        prefix,
        str(PATIENT_S),
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"holding"
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)
    key = f"{prefix}{{acme}}:rm"
    # The dead replica admitted 10 and held the rest of its lease (32 - 9): counted as used.
    assert await _counter(redis_url, key) == 33
    survivor = Limiter(RedisBackend(redis_url, timeout_s=PATIENT_S), prefix=prefix, lease_requests=32)
    limits = compile_limits("acme", TenantConfig(requests_per_minute=400))
    try:
        admitted = sum([await _admit_many([survivor], limits, 100) for _ in range(6)])
        assert 10 + admitted == 400 - 23, admitted  # never more than the limit; short by the dead lease
        # The stranded rest comes back when the window ends (its counter expires with it).
        client = redis.Redis.from_url(redis_url)
        assert 0 < await client.pttl(key) <= 60_000
        await client.aclose()
    finally:
        await survivor.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return server
        except OSError:
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGKILL)
    server.wait(10)


@pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("ATP_REQUIRE_SERVICES"),
    reason="no redis-server",
)
async def test_redis_restarted_mid_window_leases_spend_on_then_admission_fails_closed_and_recovers(tmp_path):
    port = _free_port()
    server = _start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    limiters = [
        Limiter(RedisBackend(url, timeout_s=0.2), lease_requests=32, probe_interval_s=0.05) for _ in range(2)
    ]
    for limiter in limiters:
        limiter.start()
    limits = compile_limits("acme", TenantConfig(requests_per_minute=400))
    try:
        assert await _admit_many(limiters, limits, 20) == 20  # each replica now holds a lease
        _stop(server)
        # Down: what each replica holds of its lease was granted by the store and is still spent...
        held = 0
        for limiter in limiters:
            while True:
                try:
                    await limiter.admit(limits)
                except Unavailable:
                    break  # ...and past it, the closed fail mode refuses as without leases.
                held += 1
        assert 0 < held <= 2 * 32
        assert not any(limiter.healthy for limiter in limiters)
        server = _start_redis(port, tmp_path)
        deadline = time.monotonic() + 5
        while not all(limiter.healthy for limiter in limiters):
            assert time.monotonic() < deadline, "limiters did not see the store again"
            await asyncio.sleep(0.02)
        # A pooled connection to the old server fails once; then each replica admits again.
        admitted = 0
        for limiter in limiters:
            while True:
                try:
                    await limiter.admit(limits)
                except Unavailable:
                    assert time.monotonic() < deadline + 5, "no admission after the restart"
                    await asyncio.sleep(0.05)
                    continue
                admitted += 1
                break
        # The restarted store lost the window's count: admission starts over from zero, exact again.
        admitted += sum([await _admit_many(limiters, limits, 100) for _ in range(6)])
        assert admitted == 400
        for limiter in limiters:
            await limiter.flush()
        assert await _counter(url, "atp:{acme}:rm") <= 400
    finally:
        for limiter in limiters:
            await limiter.close()
        _stop(server)


async def test_a_limit_lowered_while_leases_are_out_takes_effect_within_a_second(redis_url):
    prefix = _prefix()
    config = builtin_config(local_api_key="sk-local")
    writer = RedisDirectoryStore(redis_url, prefix=prefix)
    await writer.put_tenant("acme", {"requests_per_minute": 1000})
    followers = [
        DirectoryFollower(config, RedisDirectoryStore(redis_url, prefix=prefix), poll_s=0.05)
        for _ in range(2)
    ]
    limiters = [
        Limiter(RedisBackend(redis_url, timeout_s=PATIENT_S), prefix=prefix, lease_requests=32)
        for _ in range(2)
    ]
    for follower, limiter in zip(followers, limiters, strict=True):
        await follower.start()
        limiter.start()

    async def admit(i: int) -> str:
        limits = followers[i % 2].directory.limits_for("acme")
        assert limits is not None
        try:
            await limiters[i % 2].admit(limits)
        except RateLimited as exc:
            return exc.message
        return ""

    try:
        assert [await admit(i) for i in range(40)] == [""] * 40  # both replicas hold leases now
        await writer.put_tenant("acme", {"requests_per_minute": 30})
        changed = time.monotonic()
        # Both replicas refuse by the new limit within a second, although their old leases had room.
        # (Until a replica sees the change it admits by the old limit, from its lease.)
        refused = [False, False]
        meanwhile = 0
        while not all(refused):
            assert time.monotonic() - changed < 1.0, "lowered limit not in force within a second"
            for i in range(2):
                outcome = await admit(i)
                meanwhile += outcome == ""
                refused[i] = refused[i] or "limit 30" in outcome
            await asyncio.sleep(0.01)
        # Raised again to 60: the leases stranded under the old limits come back, and exactly the rest passes.
        await writer.put_tenant("acme", {"requests_per_minute": 60})
        await asyncio.sleep(1.6)
        outcomes = [await admit(i) for i in range(40)]
        assert outcomes.count("") == 60 - 40 - meanwhile, (meanwhile, outcomes)
    finally:
        for follower, limiter in zip(followers, limiters, strict=True):
            await limiter.close()
            await follower.close()
        await writer.close()
