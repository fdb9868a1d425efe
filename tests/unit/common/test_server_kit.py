"""The server kit against a real grpc.aio server on port 0: health, reflection, error mapping, drain."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp_common.errors import InvalidArgument, RateLimited, StartupError, from_rpc_error
from atp_common.lifecycle import open_lifecycle
from atp_common.server import ServiceRegistration, start_server
from atp_common.settings import ServiceSettings

SERVICE = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name


class _Servicer(adapters_pb2_grpc.AdaptersServiceServicer):
    """Raises on demand so the interceptor's mapping is visible; streams slowly for drain tests."""

    def __init__(self) -> None:
        self.stream_started = asyncio.Event()
        self.release = asyncio.Event()

    async def ListModels(self, request, context):
        raise RateLimited("slow down", retry_after=2.5)

    async def Generate(self, request, context):
        if request.model == "bad":
            raise InvalidArgument("unknown model 'bad'", param="model")
        if request.model == "boom":
            raise RuntimeError("secret internals")
        yield adapters_pb2.GenerateResponse(header=adapters_pb2.GenerateHeader(model="m"))
        self.stream_started.set()
        await self.release.wait()
        yield adapters_pb2.GenerateResponse(completion=adapters_pb2.GenerateCompletion())


@pytest.fixture
async def running():
    servicer = _Servicer()
    settings = ServiceSettings(port=0, drain_delay_s=0.2, grace_s=5.0)
    server = await start_server(
        settings,
        [ServiceRegistration(adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, servicer, SERVICE)],
    )
    channel = aio.insecure_channel(server.address)
    yield server, servicer, channel
    await channel.close()
    if not server.draining:
        await server.stop_now()


async def test_health_serving_for_server_and_each_service(running):
    _server, _, channel = running
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_service_health_and_reflection(running):
    _, _, channel = running
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
        break
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_domain_errors_keep_their_class_and_details(running):
    _, _, channel = running
    stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListModels(adapters_pb2.ListModelsRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    error = from_rpc_error(caught.value)
    assert isinstance(error, RateLimited) and error.retry_after == 2.5 and error.message == "slow down"

    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in stub.Generate(adapters_pb2.GenerateRequest(model="bad"), timeout=5):
            pass
    error = from_rpc_error(caught.value)
    assert isinstance(error, InvalidArgument) and error.param == "model"


async def test_unexpected_errors_become_internal_without_details(running):
    _, _, channel = running
    stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in stub.Generate(adapters_pb2.GenerateRequest(model="boom"), timeout=5):
            pass
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (caught.value.details() or "")


async def test_drain_finishes_in_flight_stream_and_refuses_new_calls(running):
    server, servicer, channel = running
    stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
    health_stub = health_pb2_grpc.HealthStub(channel)
    call = stub.Generate(adapters_pb2.GenerateRequest(model="m"), timeout=10)
    first = await call.read()
    assert first.header.model == "m"
    await servicer.stream_started.wait()

    drain = asyncio.create_task(server.drain())
    # NOT_SERVING at once, before the propagation delay is over.
    for _ in range(50):
        status = (await health_stub.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
        if status == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.01)
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    await asyncio.sleep(0.4)  # past the drain delay: the server now refuses new calls

    other = aio.insecure_channel(server.address)
    with pytest.raises(aio.AioRpcError):
        await adapters_pb2_grpc.AdaptersServiceStub(other).ListModels(
            adapters_pb2.ListModelsRequest(), timeout=2
        )
    await other.close()

    servicer.release.set()
    last = await call.read()
    assert last.HasField("completion")
    assert await call.code() == grpc.StatusCode.OK
    await asyncio.wait_for(drain, 10)


async def test_health_watch_streams_status_changes(running):
    server, _, channel = running
    stub = health_pb2_grpc.HealthStub(channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    await server.set_serving(False)
    second = await watch.read()
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()


async def test_a_taken_port_fails_to_start_instead_of_sharing_it(running):
    # gRPC's default SO_REUSEPORT would have let this second server join the first on its port.
    server, servicer, _ = running
    settings = ServiceSettings(port=server.port)
    registration = ServiceRegistration(
        adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, servicer, SERVICE
    )
    with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        await start_server(settings, [registration])


async def test_a_taken_metrics_port_fails_to_start_saying_which():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"127.0.0.1:{port} for metrics"):
            await open_lifecycle(ServiceSettings(port=0, metrics_port=port))
