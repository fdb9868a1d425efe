"""The server kit's liveness health name through a drain, and its per-method gRPC call metrics."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp_common.errors import InvalidArgument
from atp_common.server import LIVENESS_SERVICE, ServiceRegistration, start_server
from atp_common.settings import ServiceSettings
from atp_tools import probe

SERVICE = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name
GENERATE = f"/{SERVICE}/Generate"
LIST_MODELS = f"/{SERVICE}/ListModels"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The liveness watch never ends by itself, so a drain waits out the whole grace period for it; the in-flight
# Generate ends as soon as the test releases it, so a short grace is enough.
GRACE_S = 2.0


class _Servicer(adapters_pb2_grpc.AdaptersServiceServicer):
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def ListModels(self, request, context):
        return adapters_pb2.ListModelsResponse()

    async def Generate(self, request, context):
        if request.model == "bad":
            raise InvalidArgument("unknown model 'bad'", param="model")
        yield adapters_pb2.GenerateResponse(header=adapters_pb2.GenerateHeader(model="m"))
        self.started.set()
        await self.release.wait()
        yield adapters_pb2.GenerateResponse(completion=adapters_pb2.GenerateCompletion())


@pytest.fixture
async def running():
    servicer = _Servicer()
    server = await start_server(
        ServiceSettings(port=0, drain_delay_s=0.5, grace_s=GRACE_S),
        [ServiceRegistration(adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, servicer, SERVICE)],
    )
    channel = aio.insecure_channel(server.address)
    yield server, servicer, channel
    await channel.close()
    if not server.draining:
        await server.stop_now()


async def _status(stub: health_pb2_grpc.HealthStub, name: str) -> int:
    return (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status


async def test_liveness_stays_serving_while_readiness_drains(running):
    server, servicer, channel = running
    health = health_pb2_grpc.HealthStub(channel)
    assert await _status(health, LIVENESS_SERVICE) == SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE), timeout=10)
    assert (await watch.read()).status == SERVING

    # An in-flight stream keeps the drain in its grace period, where probes still get answers.
    stream = adapters_pb2_grpc.AdaptersServiceStub(channel).Generate(
        adapters_pb2.GenerateRequest(model="m"), timeout=10
    )
    await stream.read()
    await servicer.started.wait()
    drain = asyncio.create_task(server.drain())
    async with asyncio.timeout(5):
        while True:
            if await _status(health, "") == NOT_SERVING:
                break
            await asyncio.sleep(0.01)
    assert await _status(health, SERVICE) == NOT_SERVING
    assert await _status(health, LIVENESS_SERVICE) == SERVING
    # The image's probe, as the Helm chart's liveness (exec form) and readiness probes call it.
    alive = await asyncio.to_thread(probe.main, [server.address, f"--service={LIVENESS_SERVICE}"])
    ready = await asyncio.to_thread(probe.main, [server.address])
    assert (alive, ready) == (0, 1)

    servicer.release.set()
    assert (await stream.read()).HasField("completion")
    await asyncio.wait_for(drain, 10)
    # A liveness watcher never saw the process as dead: the stream ended with the server, no NOT_SERVING.
    statuses = []
    with pytest.raises(aio.AioRpcError):
        while (message := await watch.read()) is not aio.EOF:
            statuses.append(message.status)
    assert NOT_SERVING not in statuses


def _sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_every_call_is_counted_by_method_and_code(running):
    _server, servicer, channel = running
    stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
    before = {
        "ok": _sample("atp_grpc_requests_total", method=LIST_MODELS, code="OK"),
        "invalid": _sample("atp_grpc_requests_total", method=GENERATE, code="INVALID_ARGUMENT"),
        "cancelled": _sample("atp_grpc_requests_total", method=GENERATE, code="CANCELLED"),
        "streamed": _sample("atp_grpc_requests_total", method=GENERATE, code="OK"),
        "seconds": _sample("atp_grpc_request_seconds_count", method=GENERATE),
    }
    await stub.ListModels(adapters_pb2.ListModelsRequest(), timeout=5)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Generate(adapters_pb2.GenerateRequest(model="bad"), timeout=5).read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # A stream the client abandons counts as CANCELLED once the server notices.
    abandoned = stub.Generate(adapters_pb2.GenerateRequest(model="m"), timeout=5)
    await abandoned.read()
    abandoned.cancel()
    async with asyncio.timeout(5):
        while True:
            if _sample("atp_grpc_requests_total", method=GENERATE, code="CANCELLED") > before["cancelled"]:
                break
            await asyncio.sleep(0.01)

    servicer.release.set()
    replies = [r async for r in stub.Generate(adapters_pb2.GenerateRequest(model="m"), timeout=5)]
    assert replies[-1].HasField("completion")

    assert _sample("atp_grpc_requests_total", method=LIST_MODELS, code="OK") == before["ok"] + 1
    invalid = _sample("atp_grpc_requests_total", method=GENERATE, code="INVALID_ARGUMENT")
    assert invalid == before["invalid"] + 1
    assert _sample("atp_grpc_requests_total", method=GENERATE, code="OK") == before["streamed"] + 1
    assert _sample("atp_grpc_request_seconds_count", method=GENERATE) == before["seconds"] + 3
