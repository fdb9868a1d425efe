"""Service-to-service mTLS in the server kit: certificates generated here, real gRPC servers on port 0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from atp_common.channels import open_channel
from atp_common.server import RunningServer, start_server
from atp_common.settings import ServiceSettings
from atp_tools import probe
from tests.support.tls_material import TlsMaterial, make_tls_material


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def mtls_server(tls: TlsMaterial) -> AsyncIterator[RunningServer]:
    settings = ServiceSettings(
        port=0, tls_cert=tls.server.cert, tls_key=tls.server.key, tls_ca=tls.ca, drain_delay_s=0
    )
    running = await start_server(settings, [])
    try:
        yield running
    finally:
        await running.stop_now()


async def health(channel: aio.Channel) -> int:
    async with channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        return reply.status


async def test_a_client_with_a_certificate_from_the_ca_is_served(
    tls: TlsMaterial, mtls_server: RunningServer
) -> None:
    client = ServiceSettings(tls_cert=tls.client.cert, tls_key=tls.client.key, tls_ca=tls.ca)
    assert await health(open_channel(mtls_server.address, client)) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate", "plaintext"])
async def test_a_client_without_a_valid_certificate_is_refused(
    tls: TlsMaterial, mtls_server: RunningServer, who: str
) -> None:
    settings = {
        "no certificate": ServiceSettings(tls_ca=tls.ca),
        "another CA's certificate": ServiceSettings(
            tls_cert=tls.rogue_client.cert, tls_key=tls.rogue_client.key, tls_ca=tls.ca
        ),
        "plaintext": ServiceSettings(),
    }[who]
    with pytest.raises(aio.AioRpcError) as refused:
        await health(open_channel(mtls_server.address, settings))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_that_does_not_trust_the_server_refuses_it(
    tls: TlsMaterial, mtls_server: RunningServer
) -> None:
    # The client's CA did not sign the server's certificate: the client must not talk to it.
    client = ServiceSettings(tls_cert=tls.client.cert, tls_key=tls.client.key, tls_ca=tls.rogue_ca)
    with pytest.raises(aio.AioRpcError) as refused:
        await health(open_channel(mtls_server.address, client))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_tls_without_client_certificates_when_no_ca_is_set(tls: TlsMaterial) -> None:
    server = await start_server(ServiceSettings(port=0, tls_cert=tls.server.cert, tls_key=tls.server.key), [])
    try:
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await health(open_channel(server.address, ServiceSettings(tls_ca=tls.ca))) == serving
        with pytest.raises(aio.AioRpcError):
            await health(open_channel(server.address, ServiceSettings()))
    finally:
        await server.stop_now()


def test_half_a_key_pair_is_refused_at_start_up(tls: TlsMaterial) -> None:
    with pytest.raises(ValidationError, match="tls_cert and tls_key"):
        ServiceSettings(tls_cert=tls.client.cert)


async def test_the_health_probe_speaks_mtls(tls: TlsMaterial, mtls_server: RunningServer) -> None:
    address = mtls_server.address
    ok, detail = await _in_thread(probe.check, address, ca=tls.ca, cert=tls.client.cert, key=tls.client.key)
    assert ok and detail == "SERVING"
    ok, detail = await _in_thread(probe.check, address, ca=tls.ca)
    assert not ok and detail.startswith("UNAVAILABLE")
    code = await _in_thread(
        probe.main, [address, "--ca", tls.ca, "--cert", tls.client.cert, "--key", tls.client.key]
    )
    assert code == probe.EXIT_SERVING
    # The certificate names localhost too: the probe can verify that name while dialling the IP.
    code = await _in_thread(
        probe.main,
        [
            address,
            "--ca",
            tls.ca,
            "--cert",
            tls.client.cert,
            "--key",
            tls.client.key,
            "--server-name",
            "localhost",
        ],
    )
    assert code == probe.EXIT_SERVING
    assert await _in_thread(probe.main, [address]) == probe.EXIT_NOT_SERVING


async def _in_thread(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    # The probe is synchronous; the server under test runs on this loop.
    return await asyncio.to_thread(fn, *args, **kwargs)
