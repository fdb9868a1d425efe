"""What a request costs grpc.aio as a call of its own against items of one batched stream (both sides' CPU)."""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import grpc
import uvloop
from grpc import aio

from atp_common.server import GRPC_OPTIONS

REQUEST = b"x" * 300
MESSAGE = b"d" * 80
SERVICE = "bench.Transport"
MODES = ("unary", "stream", "bidi", "bidi-batched")


def _same(data: bytes) -> bytes:
    return data


def _pack(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _unpack(data: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from("<I", data, offset)
        items.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


async def _drain_queue(queue: asyncio.Queue[bytes]) -> list[bytes]:
    items = [await queue.get()]
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _handlers(messages: int, batched: bool) -> dict[str, grpc.RpcMethodHandler]:
    async def unary(request: bytes, context: aio.ServicerContext) -> bytes:
        return MESSAGE

    async def stream(request: bytes, context: aio.ServicerContext):  # type: ignore[no-untyped-def]
        for _ in range(messages):
            yield MESSAGE

    async def bidi(requests, context):  # type: ignore[no-untyped-def]
        out: asyncio.Queue[bytes] = asyncio.Queue()

        async def answer(call_id: bytes) -> None:
            for _ in range(messages):
                await asyncio.sleep(0)
                out.put_nowait(call_id + MESSAGE)

        async def read() -> None:
            async for message in requests:
                for item in _unpack(message) if batched else [message]:
                    tasks.add(asyncio.create_task(answer(item[:4])))

        tasks: set[asyncio.Task[None]] = set()
        reader = asyncio.create_task(read())
        try:
            while True:
                items = await _drain_queue(out) if batched else [await out.get()]
                if batched:
                    yield _pack(items)
                else:
                    yield items[0]
                tasks = {t for t in tasks if not t.done()}
        finally:
            reader.cancel()

    return {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, _same, _same),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, _same, _same),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, _same, _same),
    }


async def _serve(port_file: str, messages: int, batched: bool) -> None:
    server = aio.server(options=GRPC_OPTIONS)
    handler = grpc.method_handlers_generic_handler(SERVICE, _handlers(messages, batched))
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    _write_port(port_file, port)
    await server.wait_for_termination()


def _write_port(port_file: str, port: int) -> None:
    with open(port_file, "w") as out:
        out.write(str(port))


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bidi_request(channel: aio.Channel, messages: int, batched: bool) -> Callable[[], Awaitable[None]]:
    call = channel.stream_stream(f"/{SERVICE}/Bidi", _same, _same)()
    waiting: dict[bytes, asyncio.Queue[bytes]] = {}
    out: asyncio.Queue[bytes] = asyncio.Queue()

    async def write() -> None:
        while True:
            items = await _drain_queue(out) if batched else [await out.get()]
            await call.write(_pack(items) if batched else items[0])

    async def read() -> None:
        while True:
            message = await call.read()
            for item in _unpack(message) if batched else [message]:
                waiting[item[:4]].put_nowait(item[4:])

    tasks = [asyncio.create_task(write()), asyncio.create_task(read())]
    counter = [0]

    async def one() -> None:
        counter[0] += 1
        call_id = struct.pack("<I", counter[0])
        replies = waiting[call_id] = asyncio.Queue()
        out.put_nowait(call_id + REQUEST)
        for _ in range(messages):
            await replies.get()
        del waiting[call_id]

    one.tasks = tasks  # type: ignore[attr-defined]
    return one


def _request(channel: aio.Channel, mode: str, messages: int) -> Callable[[], Awaitable[None]]:
    if mode == "unary":
        unary = channel.unary_unary(f"/{SERVICE}/Unary", _same, _same)

        async def one() -> None:
            await unary(REQUEST, timeout=10)

        return one
    if mode == "stream":
        stream = channel.unary_stream(f"/{SERVICE}/Stream", _same, _same)

        async def one_stream() -> None:
            async for _ in stream(REQUEST, timeout=10):
                pass

        return one_stream
    return _bidi_request(channel, messages, mode == "bidi-batched")


async def _measure(port: int, server_pid: int, mode: str, args: argparse.Namespace) -> dict[str, float]:
    channel = aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
    await channel.channel_ready()
    one = _request(channel, mode, args.messages)
    done, stop = [0], [False]

    async def worker() -> None:
        while not stop[0]:
            await one()
            done[0] += 1

    workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    await asyncio.sleep(1.0)
    count, client, server, started = done[0], _cpu_s(os.getpid()), _cpu_s(server_pid), time.perf_counter()
    await asyncio.sleep(args.duration)
    count = done[0] - count
    client, server = _cpu_s(os.getpid()) - client, _cpu_s(server_pid) - server
    elapsed = time.perf_counter() - started
    stop[0] = True
    background = [*workers, *getattr(one, "tasks", ())]
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await channel.close()
    return {"rate": count / elapsed, "client_us": client / count * 1e6, "server_us": server / count * 1e6}


def _run_mode(mode: str, args: argparse.Namespace) -> dict[str, float]:
    port_file = tempfile.mktemp(prefix="grpc-transport-")
    command = [sys.executable, __file__, "--serve", port_file, "--messages", str(args.messages)]
    if mode == "bidi-batched":
        command.append("--batched")
    server = subprocess.Popen(command)
    try:
        while not os.path.exists(port_file) or not open(port_file).read():
            time.sleep(0.05)
        port = int(open(port_file).read())
        return asyncio.run(_measure(port, server.pid, mode, args))
    finally:
        server.kill()
        server.wait()
        os.unlink(port_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--messages", type=int, default=3, help="reply messages per request (streams)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--batched", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    uvloop.install()
    if args.serve:
        asyncio.run(_serve(args.serve, args.messages, args.batched))
        return
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for round_index in range(args.rounds):
        order = MODES[round_index % len(MODES) :] + MODES[: round_index % len(MODES)]
        for mode in order:
            results[mode].append(_run_mode(mode, args))
    best = {mode: min(runs, key=lambda r: r["client_us"] + r["server_us"]) for mode, runs in results.items()}
    unary_total = best["unary"]["client_us"] + best["unary"]["server_us"]
    print(f"{'mode':14s} {'req/s':>8s} {'client µs':>10s} {'server µs':>10s} {'both µs':>8s} {'÷ unary':>8s}")
    for mode, row in best.items():
        total = row["client_us"] + row["server_us"]
        print(
            f"{mode:14s} {row['rate']:8.0f} {row['client_us']:10.1f} {row['server_us']:10.1f} "
            f"{total:8.1f} {total / unary_total:8.2f}"
        )


if __name__ == "__main__":
    main()
