"""Runs the whole suite locally as four processes (what `make run` does), and drains them on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from dataclasses import dataclass, field

import orjson

from atp_common.config import API_KEY_ENV

# Start order follows the data flow's dependencies; stop order is the reverse, so the edge stops taking
# work first and the observer receives the adapters' last observations before it goes.
START_ORDER = ("observer", "router", "adapters", "gateway")
DEFAULT_PORTS = {"router": 50051, "observer": 50052, "adapters": 50053, "gateway": 8080}
DEFAULT_METRICS_PORTS = {"gateway": 9100, "router": 9101, "observer": 9102, "adapters": 9103}
READY_TIMEOUT_S = 60.0


@dataclass
class Child:
    """One service process and what it reported when it became ready."""

    name: str
    process: asyncio.subprocess.Process
    port: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None


async def _pump(child: Child, quiet: bool) -> None:
    """Forward the child's log lines and notice its ready line."""
    assert child.process.stderr is not None
    while line := await child.process.stderr.readline():
        if not child.ready.is_set() and b'"ready"' in line:
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if event.get("event") == "ready":
                    child.port = int(event["port"])
                    child.ready.set()
        if not quiet:
            sys.stderr.buffer.write(line)
            sys.stderr.flush()


def _env_for(name: str, args: argparse.Namespace, ports: dict[str, int]) -> dict[str, str]:
    prefix = f"ATP_{name.upper()}_"
    env = dict(os.environ)
    env[prefix + "PORT"] = str(0 if args.ephemeral_ports else DEFAULT_PORTS[name])
    if args.no_metrics:
        env[prefix + "METRICS_PORT"] = "none"
    else:
        env[prefix + "METRICS_PORT"] = str(0 if args.ephemeral_ports else DEFAULT_METRICS_PORTS[name])
    if args.state_dir:
        env.setdefault("ATP_OBSERVER_SQLITE_PATH", os.path.join(args.state_dir, "observer.sqlite3"))
        env.setdefault("ATP_ADAPTERS_SPOOL_DIR", os.path.join(args.state_dir, "spool"))
    for peer in ("router", "observer", "adapters"):
        if peer in ports and peer != name:
            env[f"{prefix}{peer.upper()}_ADDR"] = f"127.0.0.1:{ports[peer]}"
    return env


async def run_suite(args: argparse.Namespace) -> int:
    """Start every service, print where the gateway is, and drain them all on SIGINT or SIGTERM."""
    if not os.environ.get(API_KEY_ENV) and not os.environ.get("ATP_CONFIG"):
        os.environ[API_KEY_ENV] = "atp-local-" + secrets.token_urlsafe(24)
        generated = True
    else:
        generated = False

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    children: list[Child] = []
    ports: dict[str, int] = {}
    exit_code = 0
    try:
        for name in START_ORDER:
            if not await _start(name, args, ports, children, stop):
                exit_code = 1
                return exit_code

        summary = {"event": "suite_ready", "ports": ports, "gateway": f"http://127.0.0.1:{ports['gateway']}"}
        if generated:
            summary["api_key"] = os.environ[API_KEY_ENV]
        print(orjson.dumps(summary).decode(), flush=True)
        if not args.quiet:
            _print_banner(ports["gateway"], os.environ.get(API_KEY_ENV, ""), generated)

        waits = {asyncio.create_task(c.process.wait()): c for c in children}
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*waits, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in waits:
                print(f"atp: {waits[task].name} exited unexpectedly; stopping the suite", file=sys.stderr)
                exit_code = 1
        stopping.cancel()
        return exit_code
    finally:
        exit_code = max(exit_code, await _stop_all(children))


async def _start(
    name: str, args: argparse.Namespace, ports: dict[str, int], children: list[Child], stop: asyncio.Event
) -> bool:
    """Start one service (in `children` from then on) and wait for its ready line; False, said on stderr,
    when it exits first, the suite is stopped, or it is not ready in time."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"atp_{name}",
        env=_env_for(name, args, ports),
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        # Own session: Ctrl-C reaches only this launcher, which stops the services in order.
        start_new_session=True,
    )
    child = Child(name, process)
    child.pump = asyncio.create_task(_pump(child, args.quiet))
    children.append(child)
    exited = asyncio.create_task(process.wait())
    ready = asyncio.create_task(child.ready.wait())
    done, _ = await asyncio.wait(
        {exited, ready, asyncio.create_task(stop.wait())},
        timeout=READY_TIMEOUT_S,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if ready not in done:
        reason = "exited" if exited in done else "was stopped" if stop.is_set() else "did not become ready"
        print(f"atp: {name} {reason}; stopping the suite", file=sys.stderr)
        return False
    exited.cancel()
    ports[name] = child.port
    return True


async def _stop_all(children: list[Child]) -> int:
    """SIGTERM each service in reverse start order and wait for its drain; returns 1 if any failed."""
    failed = 0
    for child in reversed(children):
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), 60)
            except TimeoutError:
                child.process.kill()
                await child.process.wait()
        if child.pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(child.pump, 5)
        if child.process.returncode not in (0, -signal.SIGTERM):
            failed = 1
    return failed


def _print_banner(port: int, key: str, generated: bool) -> None:
    url = f"http://127.0.0.1:{port}"
    print(
        f"\nATP is running. Gateway: {url}   (Ctrl-C drains and stops every service)\n"
        + (f"Local tenant API key (generated; set {API_KEY_ENV} to choose one): {key}\n" if generated else "")
        + f"Try:\n  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer {key or '$ATP_API_KEY'}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"model": "auto", "messages": [{"role": "user", "content": "hello"}]}\'\n',
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m atp_tools.suite`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--ephemeral-ports", action="store_true", help="bind every service to a free port (tests)"
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not open the metrics ports")
    parser.add_argument(
        "--state-dir", default="", help="where the SQLite file and the spool live (default var/)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not forward the services' logs")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        sys.exit(asyncio.run(run_suite(args)))
    sys.exit(uvloop.run(run_suite(args)))


if __name__ == "__main__":
    main()
