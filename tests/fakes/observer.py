"""A recording ObserverService: a real gRPC server that keeps what the adapters ship, for adapters tests."""

from __future__ import annotations

import asyncio

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.server import RunningServer, ServiceRegistration, start_server
from atp_common.settings import ServiceSettings

OBSERVER_SERVICE = observer_pb2.DESCRIPTOR.services_by_name["ObserverService"].full_name


class RecordingObserver(observer_pb2_grpc.ObserverServiceServicer):
    """A real ObserverService that keeps what it is sent, deduplicating on observation id."""

    def __init__(self) -> None:
        self.observations: dict[str, observer_pb2.Observation] = {}
        self.batches = 0
        self.arrived = asyncio.Event()

    async def Ingest(self, request_iterator, context):
        stored = duplicates = 0
        async for request in request_iterator:
            self.batches += 1
            for observation in request.observations:
                if observation.observation_id in self.observations:
                    duplicates += 1
                else:
                    self.observations[observation.observation_id] = observation
                    stored += 1
        self.arrived.set()
        return observer_pb2.IngestResponse(stored=stored, duplicates=duplicates)

    async def wait_for(self, request_id: str, within_s: float = 5.0) -> observer_pb2.Observation:
        async with asyncio.timeout(within_s):
            while True:
                for observation in self.observations.values():
                    if observation.request_id == request_id:
                        return observation
                self.arrived.clear()
                await self.arrived.wait()


async def start_recording_observer() -> tuple[RecordingObserver, RunningServer]:
    """A RecordingObserver served over real gRPC on a free port."""
    observer = RecordingObserver()
    server = await start_server(
        ServiceSettings(port=0),
        [
            ServiceRegistration(
                observer_pb2_grpc.add_ObserverServiceServicer_to_server, observer, OBSERVER_SERVICE
            )
        ],
    )
    return observer, server
