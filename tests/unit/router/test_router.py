"""The router's gRPC server: Route and Explain, WatchPolicy pushes on configuration change, bounded rate."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from atp.common.v1 import chat_pb2
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_common.server import RunningServer
from atp_router.server import build_server
from atp_router.settings import RouterSettings

TIMEOUT = 10.0

CONFIG = """
providers:
  local: {type: local}
models:
  small: {provider: local, input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4, context_window: 1000}
  large: {provider: local, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10, context_window: 100000}
routes:
  auto: {candidates: [small, large], policy: static}
default_route: auto
"""


def settings_for(**overrides: object) -> RouterSettings:
    values: dict[str, object] = {
        "port": 0,
        "metrics_port": None,
        "config_path": "",
        "observer_addr": "",
        "drain_delay_s": 0.1,
        "grace_s": 2.0,
        "reload_on_sighup": False,
        "snapshot_min_interval_s": 0.0,
        "config_poll_s": 0.05,
        "seed": 7,
    }
    values.update(overrides)
    return RouterSettings(**values)  # type: ignore[arg-type]


class Router:
    """A running router and a stub on a real channel to it."""

    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self.channel = open_channel(running.address)
        self.stub = router_pb2_grpc.RouterServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
        if not self.running.draining:
            await self.running.stop_now()


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    client = Router(await build_server(settings_for(), config=builtin_config("")))
    yield client
    await client.close()


def user(text: str) -> list[chat_pb2.ChatMessage]:
    return [chat_pb2.ChatMessage(role="user", content=text)]


class Snapshots:
    """Reads a WatchPolicy stream; a read still pending after a quiet period is kept for the next one
    (cancelling a grpc.aio read would cancel the whole call)."""

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self.call = call
        self._read: asyncio.Future[object] | None = None

    def _pending(self) -> asyncio.Future[object]:
        if self._read is None:
            self._read = asyncio.ensure_future(self.call.read())
        return self._read

    async def next(
        self, accept: Callable[[router_pb2.PolicySnapshot], bool] = lambda s: True
    ) -> router_pb2.PolicySnapshot:
        """The next snapshot that `accept`s, within the deadline."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            done, _ = await asyncio.wait({self._pending()}, timeout=deadline - time.monotonic())
            assert done, "no snapshot arrived in time"
            response, self._read = self._pending().result(), None
            assert response is not grpc.aio.EOF, "the policy stream ended"
            assert isinstance(response, router_pb2.WatchPolicyResponse)
            if accept(response.snapshot):
                return response.snapshot

    async def quiet(self, seconds: float) -> bool:
        """True when nothing arrives for `seconds`."""
        done, _ = await asyncio.wait({self._pending()}, timeout=seconds)
        return not done

    def close(self) -> None:
        if self._read is not None:
            self._read.cancel()
        self.call.cancel()


def watch(router: Router, known_version: int = 0) -> Snapshots:
    return Snapshots(
        router.stub.WatchPolicy(
            router_pb2.WatchPolicyRequest(replica_id="test", known_version=known_version), timeout=TIMEOUT
        )
    )


async def test_route_then_explain_round_trip(router: Router) -> None:
    reply = await router.stub.Route(
        router_pb2.RouteRequest(tenant="acme", model="auto", messages=user("What is 2 + 2?")), timeout=TIMEOUT
    )
    decision = reply.decision
    assert decision.decision_id and decision.route == "auto" and decision.policy == "static"
    assert [c.model for c in decision.candidates] == ["local-small", "local-large"]
    assert decision.propensity == 1.0
    assert decision.features.estimated_prompt_tokens > 0  # computed by the router from the messages
    assert decision.policy_version > 0

    explained = await router.stub.Explain(
        router_pb2.ExplainRequest(decision_id=decision.decision_id), timeout=TIMEOUT
    )
    assert explained.decision == decision
    assert explained.decided_by == "router" and explained.tenant == "acme"
    assert abs(explained.decided_at.ToNanoseconds() - time.time_ns()) < 60 * 10**9

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Explain(router_pb2.ExplainRequest(decision_id="unknown"), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_route_takes_given_features_and_refuses_what_cannot_be_routed(router: Router) -> None:
    # Precomputed features: a vision request only the large model can serve.
    features = chat_pb2.RequestFeatures(estimated_prompt_tokens=50, needs_vision=True)
    reply = await router.stub.Route(
        router_pb2.RouteRequest(tenant="acme", model="auto", features=features), timeout=TIMEOUT
    )
    assert [c.model for c in reply.decision.candidates] == ["local-large"]
    assert [f.model for f in reply.decision.filtered] == ["local-small"]

    direct = await router.stub.Route(
        router_pb2.RouteRequest(tenant="acme", model="local-small", messages=user("hi")), timeout=TIMEOUT
    )
    assert [c.model for c in direct.decision.candidates] == ["local-small"]

    for request, code in (
        (router_pb2.RouteRequest(model="no-such-model", messages=user("hi")), grpc.StatusCode.NOT_FOUND),
        (router_pb2.RouteRequest(model="auto"), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await router.stub.Route(request, timeout=TIMEOUT)
        assert info.value.code() == code


async def test_watch_policy_sends_only_newer_snapshots(router: Router) -> None:
    stream = watch(router)
    first = await stream.next()
    stream.close()
    assert first.default_route == "auto" and [r.name for r in first.routes] == ["auto"]
    assert {m.name for m in first.models} == {"local-small", "local-large", "local-embed"}

    # A watcher that already has this version gets nothing until a newer one exists.
    up_to_date = watch(router, first.version)
    assert await up_to_date.quiet(0.3)
    up_to_date.close()


async def test_config_file_change_is_pushed_and_a_bad_one_ignored(tmp_path: Path) -> None:
    path = tmp_path / "atp.yaml"
    path.write_text(CONFIG)
    router = Router(await build_server(settings_for(config_path=str(path))))
    try:
        stream = watch(router)
        first = await stream.next()
        assert [r.name for r in first.routes] == ["auto"]

        path.write_text(CONFIG.replace("routes:\n", "routes:\n  cheap: {candidates: [small]}\n"))
        second = await stream.next()
        assert second.version > first.version
        assert sorted(r.name for r in second.routes) == ["auto", "cheap"]
        assert second.config_digest != first.config_digest

        # A broken file is logged and ignored: no new version, and routing goes on with the old config.
        path.write_text("routes: [this is not a valid configuration")
        assert await stream.quiet(0.5)
        reply = await router.stub.Route(
            router_pb2.RouteRequest(tenant="acme", model="cheap", messages=user("hi")), timeout=TIMEOUT
        )
        assert reply.decision.policy_version == second.version

        path.write_text(CONFIG.replace("policy: static", "policy: thompson"))
        third = await stream.next()
        assert [r.name for r in third.routes] == ["auto"]
        assert third.routes[0].kind == router_pb2.POLICY_KIND_THOMPSON
        stream.close()
    finally:
        await router.close()


async def test_pushes_are_rate_bounded_and_carry_the_latest(tmp_path: Path) -> None:
    path = tmp_path / "atp.yaml"
    path.write_text(CONFIG)
    interval = 0.4
    router = Router(
        await build_server(
            settings_for(config_path=str(path), snapshot_min_interval_s=interval, config_poll_s=0.01)
        )
    )
    try:
        stream = watch(router)
        first = await stream.next()
        received: list[tuple[float, router_pb2.PolicySnapshot]] = []

        async def collect() -> None:
            while True:
                snapshot = await stream.next()
                received.append((time.monotonic(), snapshot))

        collector = asyncio.ensure_future(collect())
        # Thirty distinct configurations in about 1.2 s: one per config poll, far faster than the bound.
        started = time.monotonic()
        for i in range(30):
            path.write_text(CONFIG.replace("context_window: 1000}", f"context_window: {1000 + i + 1}}}"))
            await asyncio.sleep(0.04)
        final_window = 1030
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if received and _small_window(received[-1][1]) == final_window:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        collector.cancel()
        stream.close()

        assert received and _small_window(received[-1][1]) == final_window  # the latest always arrives
        # At most one push per interval (plus the first one after the initial snapshot).
        assert len(received) <= elapsed / interval + 2, (len(received), elapsed)
        assert len(received) < 30
        times = [first_at for first_at, _ in received]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= interval * 0.8 for gap in gaps), gaps
        versions = [snapshot.version for _, snapshot in received]
        assert versions == sorted(versions) and versions[0] > first.version
    finally:
        await router.close()


def _small_window(snapshot: router_pb2.PolicySnapshot) -> int:
    return next(m.context_window for m in snapshot.models if m.name == "small")


async def test_drain_ends_policy_streams_promptly() -> None:
    router = Router(await build_server(settings_for(grace_s=10.0), config=builtin_config("")))
    try:
        stream = watch(router)
        await stream.next()
        started = time.monotonic()
        await router.running.drain()
        assert time.monotonic() - started < 3.0  # not the 10 s grace
        assert await stream.call.read() == grpc.aio.EOF
        assert await stream.call.code() == grpc.StatusCode.OK
    finally:
        await router.close()


async def test_restarted_router_publishes_a_newer_version() -> None:
    first = Router(await build_server(settings_for(), config=builtin_config("")))
    try:
        stream = watch(first)
        before = await stream.next()
        stream.close()
    finally:
        await first.close()
    second = Router(await build_server(settings_for(), config=builtin_config("")))
    try:
        # An adapters replica reconnects with the version it has; the new process must still send.
        stream = watch(second, before.version)
        after = await stream.next()
        stream.close()
        assert after.version > before.version
    finally:
        await second.close()
