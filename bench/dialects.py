"""Responses and Messages against Chat Completions on ATP's full path, interleaved, on the nginx mock."""

# Each dialect is measured streamed and non-streamed at the same concurrency, rounds rotating the order;
# the report gives each one's req/s, p50, CPU per request and its ratio to chat completions measured in
# the same run (the dialects translate the same internal reply, so the ratio is the translation's cost).

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    BENCH_DIR,
    BenchError,
    WrkResult,
    cpu_seconds,
    ensure_debian_tools,
    post,
    process_tree,
    run_wrk,
)
from mock_upstream import EXPECTED_TEXT, MockUpstream
from targets import Atp

PROMPT = "Say hello to the benchmark."
DIALECTS = ("chat", "responses", "messages")


def request(dialect: str, stream: bool) -> tuple[str, bytes, dict[str, str]]:
    """The path, body and extra headers of one request of `dialect`."""
    model = "bench-stream" if stream else "bench-json"
    if dialect == "chat":
        body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
        path, headers = "/v1/chat/completions", dict[str, str]()
    elif dialect == "responses":
        body = {"model": model, "input": PROMPT}
        path, headers = "/v1/responses", {}
    else:
        body = {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}]}
        path, headers = "/v1/messages", {"anthropic-version": "2023-06-01"}
    if stream:
        body["stream"] = True
    return path, json.dumps(body, separators=(",", ":")).encode(), headers


def _events(payload: bytes) -> list[dict[str, Any]]:
    events = []
    for block in payload.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"".join(line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:"))
        if data and data != b"[DONE]":
            events.append(json.loads(data))
    return events


def reply_text(dialect: str, stream: bool, payload: bytes) -> tuple[str, bool]:
    """The reply's text as a client of `dialect` reads it, and whether the reply ended properly."""
    if not stream:
        reply = json.loads(payload)
        if dialect == "chat":
            return reply["choices"][0]["message"]["content"], True
        if dialect == "responses":
            parts = [p for item in reply["output"] if item["type"] == "message" for p in item["content"]]
            return "".join(p.get("text", "") for p in parts), reply["status"] == "completed"
        return "".join(b.get("text", "") for b in reply["content"]), reply["stop_reason"] == "end_turn"
    events = _events(payload)
    if dialect == "chat":
        text = "".join((c.get("delta") or {}).get("content") or "" for e in events for c in e["choices"])
        return text, payload.rstrip().endswith(b"data: [DONE]")
    if dialect == "responses":
        text = "".join(str(e["delta"]) for e in events if e["type"] == "response.output_text.delta")
        return text, events[-1]["type"] == "response.completed"
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    text = "".join(str(d["text"]) for d in deltas if isinstance(d, dict) and d["type"] == "text_delta")
    return text, events[-1]["type"] == "message_stop"


def check(atp: Atp, dialect: str, stream: bool) -> None:
    """One full reply of each kind carries the mock's whole text and ends as the dialect ends a reply."""
    path, body, headers = request(dialect, stream)
    status, _, payload = post(atp.gateway + path, body, {"Authorization": f"Bearer {atp.api_key}", **headers})
    if status != 200:
        raise BenchError(f"{dialect} (stream={stream}): HTTP {status} {payload[:300]!r}")
    text, ended = reply_text(dialect, stream, payload)
    if text != EXPECTED_TEXT or not ended:
        raise BenchError(f"{dialect} (stream={stream}): wrong reply {text[:80]!r}, ended={ended}")


def measure(atp: Atp, dialect: str, stream: bool, connections: int, duration: float) -> WrkResult:
    path, body, headers = request(dialect, stream)
    pids = atp.pids()
    before = cpu_seconds(process_tree(pids))
    result = run_wrk(
        atp.gateway + path,
        stream=stream,
        connections=connections,
        duration_s=duration,
        headers={"Authorization": f"Bearer {atp.api_key}", **headers},
        body=body,
    )
    result.cpu_s = cpu_seconds(process_tree(pids)) - before
    return result


def summarize(runs: dict[tuple[str, bool], list[WrkResult]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for (dialect, stream), results in runs.items():
        requests = sum(r.requests for r in results)
        rows.append(
            {
                "dialect": dialect,
                "stream": stream,
                "rps": statistics.median(r.rps for r in results),
                "p50_ms": statistics.median(r.p50_ms for r in results),
                "cpu_ms_per_request": 1000 * sum(r.cpu_s for r in results) / requests if requests else None,
                "errors": sum(r.errors for r in results),
            }
        )
    for row in rows:
        base = next(r for r in rows if r["dialect"] == "chat" and r["stream"] == row["stream"])
        row["rps_vs_chat"] = row["rps"] / base["rps"] if base["rps"] else None  # type: ignore[operator]
    return rows


def run(args: argparse.Namespace) -> dict[str, object]:
    ensure_debian_tools()
    logdir = Path(tempfile.mkdtemp(prefix="atp-bench-dialects-"))
    mock = MockUpstream(workers=1)
    mock.start()
    atp = Atp(mock, args.workers, logdir)
    runs: dict[tuple[str, bool], list[WrkResult]] = {(d, s): [] for s in (True, False) for d in DIALECTS}
    try:
        atp.install()
        atp.start()
        for dialect, stream in runs:
            check(atp, dialect, stream)
            measure(atp, dialect, stream, args.connections, args.warmup)
        keys = list(runs)
        for round_index in range(args.rounds):
            shift = round_index % len(keys)
            for dialect, stream in keys[shift:] + keys[:shift]:
                result = measure(atp, dialect, stream, args.connections, args.duration)
                runs[(dialect, stream)].append(result)
                print(
                    f"bench: round {round_index + 1}/{args.rounds} {dialect:<9} stream={stream!s:<5} "
                    f"{result.rps:>9,.0f} req/s  p50 {result.p50_ms:6.2f} ms  errors {result.errors}",
                    flush=True,
                )
        for dialect, stream in runs:
            check(atp, dialect, stream)
    finally:
        atp.stop()
        mock.stop()
    rows = summarize(runs)
    print(f"\n{'dialect':<10} {'stream':<7} {'req/s':>9} {'p50 ms':>7} {'CPU ms/req':>10} {'vs chat':>8}")
    for row in rows:
        print(
            f"{row['dialect']!s:<10} {row['stream']!s:<7} {row['rps']:>9,.0f} {row['p50_ms']:>7.2f} "
            f"{row['cpu_ms_per_request'] or 0:>10.2f} {row['rps_vs_chat'] or 0:>8.2f}"
        )
    return {"generated": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measurement (default 6)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded load per kind")
    parser.add_argument("--connections", type=int, default=32, help="concurrency (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes (default 1)")
    parser.add_argument("--out", default="", help="JSON output (default bench/out/dialects-<time>.json)")
    args = parser.parse_args(argv)
    report = run(args)
    out = (
        Path(args.out) if args.out else BENCH_DIR / "out" / f"dialects-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nbench: results written to {out}")


if __name__ == "__main__":
    main()
