"""mTLS between the services: observer, router, adapters and the gateway's channels, all on one CA."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_adapters.server import build_server as build_adapters
from atp_adapters.settings import AdaptersSettings
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_common.settings import ServiceSettings
from atp_gateway.gateway import Gateway
from atp_gateway.settings import GatewaySettings
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from tests.support.tls_material import make_tls_material


async def eventually(check: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_every_channel_between_the_services_runs_over_mtls(tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "tls")
    # Each service presents the one certificate here; a deployment gives each its own from the same CA.
    mtls = {"tls_cert": tls.server.cert, "tls_key": tls.server.key, "tls_ca": tls.ca}
    common = {"port": 0, "metrics_port": None, "drain_delay_s": 0.0, "grace_s": 1.0, **mtls}
    config = builtin_config("")

    observer = await build_observer(
        ObserverSettings(sqlite_path=str(tmp_path / "observer.sqlite3"), **common), config=config
    )
    router = await build_router(RouterSettings(observer_addr=observer.address, **common), config=config)
    adapters = await build_adapters(
        AdaptersSettings(
            router_addr=router.address,
            observer_addr=observer.address,
            spool_dir=str(tmp_path / "spool"),
            default_tenant="acme",
            ship_interval_s=0.02,
            **common,
        ),
        config=config,
    )
    # An adapters replica without a client certificate cannot follow the router.
    outsider = await build_adapters(
        AdaptersSettings(
            port=0,
            metrics_port=None,
            router_addr=router.address,
            observer_addr=observer.address,
            spool_dir=str(tmp_path / "spool-outsider"),
            tls_ca=tls.ca,
        ),
        config=config,
    )
    gateway = Gateway(
        GatewaySettings(adapters_addr=adapters.address, observer_addr=observer.address, **mtls), config
    )
    client = ServiceSettings(tls_cert=tls.client.cert, tls_key=tls.client.key, tls_ca=tls.ca)
    adapters_channel = open_channel(adapters.address, client)
    observer_channel = open_channel(observer.address, client)
    router_channel = open_channel(router.address, client)
    try:
        # adapters -> router: the policy watch is up.
        await eventually(lambda: adapters.parts.watcher.connected)
        # gateway -> adapters: its health follower sees SERVING.
        await gateway.start()
        await eventually(lambda: gateway.adapters is not None and gateway.adapters.serving)

        stub = adapters_pb2_grpc.AdaptersServiceStub(adapters_channel)
        request = adapters_pb2.GenerateRequest(
            request_id="mtls-1",
            model="auto",
            messages=[chat_pb2.ChatMessage(role="user", content="over mTLS")],
        )
        replies = [reply async for reply in stub.Generate(request, timeout=5)]
        decision_id = replies[0].header.decision_id
        assert "over mTLS" in "".join(d.content for r in replies for d in r.deltas)

        # adapters -> observer: the observation was shipped and stored.
        observer_stub = observer_pb2_grpc.ObserverServiceStub(observer_channel)
        deadline = time.monotonic() + 10
        while True:
            listed = await observer_stub.ListObservations(
                observer_pb2.ListObservationsRequest(tenant="acme", limit=10), timeout=3
            )
            if any(o.request_id == "mtls-1" for o in listed.observations):
                break
            assert time.monotonic() < deadline, "the observation never reached the observer"
            await asyncio.sleep(0.05)

        # router -> observer: Explain finds the adapters' decision through the observer.
        explained = await router_pb2_grpc.RouterServiceStub(router_channel).Explain(
            router_pb2.ExplainRequest(decision_id=decision_id), timeout=3
        )
        assert explained.decision.decision_id == decision_id

        # gateway -> observer: feedback is recorded.
        assert gateway.observer is not None
        feedback = await gateway.observer.record_feedback(
            decision_id=decision_id, tenant="acme", score=1.0, label="good", comment=""
        )
        assert feedback.feedback_id

        assert not outsider.parts.watcher.connected
    finally:
        for channel in (adapters_channel, observer_channel, router_channel):
            await channel.close()
        await gateway.close()
        for running in (outsider, adapters, router, observer):
            await running.stop_now()
