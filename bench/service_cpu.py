"""CPU per request of each ATP service (and of Redis), `atp` against `atp-production` in alternated wrk runs of
one process: where the production settings' CPU goes, service by service."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from pathlib import Path

from harness import cmdline, cpu_seconds, process_tree, run_wrk
from mock_upstream import MockUpstream
from production import AtpProduction
from targets import Atp

SERVICES = ("gateway", "adapters", "router", "observer")


def _service_pids(target: Atp) -> dict[str, list[int]]:
    """Each service's processes (gateway workers included) by the module it runs."""
    by_service: dict[str, list[int]] = {name: [] for name in SERVICES}
    for root in target.pids():
        name = next((s for s in SERVICES if f"atp_{s}" in cmdline(root)), "gateway")
        by_service[name].extend(process_tree([root]))
    return by_service


def _redis_pids() -> list[int]:
    return [pid for pid in process_tree([1]) if cmdline(pid).startswith("redis-server")]


def _socket_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets `pid` holds (from /proc/net/tcp by inode)."""
    inodes: set[str] = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(fd.path)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    except OSError:
        return set()
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _postgres_pids(observer: list[int]) -> list[int]:
    """The PostgreSQL backends serving the observer's connections (their title names the client port)."""
    ports = set().union(*(_socket_ports(pid) for pid in observer)) if observer else set()
    marks = tuple(f"({port})" for port in ports)
    return [
        pid
        for pid in process_tree([1])
        if cmdline(pid).startswith("postgres:") and any(mark in cmdline(pid) for mark in marks)
    ]


def measure(target: Atp, stream: bool, connections: int, duration: float) -> dict[str, float]:
    """CPU milliseconds per request of each service and of Redis over one wrk run."""
    pids = _service_pids(target)
    pids |= {"redis": _redis_pids(), "postgres": _postgres_pids(pids["observer"])}
    before = {name: cpu_seconds(p) for name, p in pids.items()}
    url, headers = target.endpoint(stream)
    result = run_wrk(url, stream=stream, connections=connections, duration_s=duration, headers=headers)
    done = max(result.requests, 1)
    row = {name: (cpu_seconds(p) - before[name]) * 1000 / done for name, p in pids.items()}
    row["total"] = sum(row[s] for s in SERVICES)
    row["req_s"] = result.requests / max(result.duration_s, 1e-9)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--modes", default="json,stream", help="comma-separated: json, stream")
    parser.add_argument(
        "--targets", default="atp,atp-production", help="comma-separated: atp, atp-production"
    )
    args = parser.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="atp-service-cpu-"))
    with MockUpstream() as mock:
        kinds = {"atp": Atp, "atp-production": AtpProduction}
        targets = [kinds[name](mock, args.workers, logdir) for name in args.targets.split(",")]
        try:
            for target in targets:
                target.install()
                target.start()
            rows: dict[tuple[str, bool], list[dict[str, float]]] = {}
            for round_no in range(args.rounds):
                order = targets if round_no % 2 == 0 else targets[::-1]
                for stream in [mode == "stream" for mode in args.modes.split(",")]:
                    for target in order:
                        row = measure(target, stream, args.connections, args.duration)
                        rows.setdefault((target.name, stream), []).append(row)
                        cells = " ".join(f"{k} {v:7.3f}" for k, v in row.items())
                        print(
                            f"round {round_no + 1} {target.name:15s} stream={stream!s:5s} {cells}", flush=True
                        )
        finally:
            for target in targets:
                target.stop()
    print("medians, CPU ms per request (req/s as measured):")
    for (name, stream), runs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = " ".join(f"{k} {statistics.median(r[k] for r in runs):7.3f}" for k in runs[0])
        print(f"{name:15s} stream={stream!s:5s} {cells}")


if __name__ == "__main__":
    main()
