"""The store says Unavailable, promptly, when its database cannot be reached or goes away."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import urlparse, urlunparse

import pytest

from atp_common.errors import Unavailable
from atp_observer.store import PostgresStore, RewardModel, SqliteStore

REWARDS = RewardModel()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def _tcp_server(handler) -> AsyncIterator[tuple[asyncio.Server, set[asyncio.StreamWriter]]]:
    writers: set[asyncio.StreamWriter] = set()

    async def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    try:
        yield server, writers
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()


def _with_port(dsn: str, port: int) -> str:
    parsed = urlparse(dsn)
    netloc = f"{parsed.username}@127.0.0.1:{port}" if parsed.username else f"127.0.0.1:{port}"
    return urlunparse(parsed._replace(netloc=netloc))


async def test_closed_port_is_unavailable_at_once() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{_closed_port()}/test", reward_model=REWARDS)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await store.open()
    assert time.monotonic() - started < 2.0
    with pytest.raises(Unavailable):
        await store.ping()


async def test_silent_server_is_unavailable_after_the_connect_timeout() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    async with _tcp_server(never_answer) as (server, _):
        port = server.sockets[0].getsockname()[1]
        store = PostgresStore(
            f"postgresql://postgres@127.0.0.1:{port}/test", reward_model=REWARDS, connect_timeout=0.3
        )
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await store.open()
        assert time.monotonic() - started < 3.0


@pytest.mark.postgres
async def test_database_lost_after_open_is_unavailable(postgres_dsn: str) -> None:
    upstream = urlparse(postgres_dsn)

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(upstream.hostname, upstream.port or 5432)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()  # one side hung up: hang up the other, as a real connection would

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            up_writer.close()

    async with _tcp_server(forward) as (server, writers):
        port = server.sockets[0].getsockname()[1]
        store = PostgresStore(
            _with_port(postgres_dsn, port),
            1,
            2,
            reward_model=REWARDS,
            connect_timeout=1.0,
            command_timeout=2.0,
        )
        await store.open()
        try:
            await store.ping()
            # The database "goes away": the listener stops and every connection through it is cut.
            server.close()
            for writer in list(writers):
                writer.transport.abort()
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await store.ping()
            with pytest.raises(Unavailable):
                await store.rewards_after(0, 10)
            assert time.monotonic() - started < 5.0
        finally:
            await store.close()


async def test_closed_sqlite_store_is_unavailable(tmp_path) -> None:
    store = SqliteStore(tmp_path / "observer.sqlite3", reward_model=REWARDS)
    with pytest.raises(Unavailable):
        await store.ping()
    await store.open()
    await store.ping()
    await store.close()
    with pytest.raises(Unavailable):
        await store.ping()
    with pytest.raises(Unavailable):
        await store.list_observations("acme", 10, None)


async def test_unopenable_sqlite_file_is_unavailable(tmp_path) -> None:
    # A directory where the database file should be.
    (tmp_path / "observer.sqlite3").mkdir()
    with pytest.raises(Unavailable):
        await SqliteStore(tmp_path / "observer.sqlite3", reward_model=REWARDS).open()
