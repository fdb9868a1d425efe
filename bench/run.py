"""ATP against LiteLLM and Portkey in one interleaved run, with nginx as the upstream and wrk as the client."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH_DIR,
    BenchError,
    RssSampler,
    WrkResult,
    cpu_seconds,
    ensure_debian_tools,
    process_tree,
    read_completion,
    read_stream,
    run_wrk,
    which,
)
from mock_upstream import EXPECTED_TEXT, STREAM_WORDS, MockUpstream
from production import ATP_TARGETS
from targets import LITELLM_VERSION, PORTKEY_VERSION, REPO, Atp, Target
from variants import ALL_TARGETS as TARGETS
from variants import compare, print_comparisons

# (phase, streamed, connections): each round measures every phase on every target, targets rotated.
# None is --connections (32 by default).
PHASES = (("throughput", False, None), ("latency", False, 1), ("stream", True, None))


@dataclass
class Outcome:
    """Everything measured for one target."""

    name: str
    description: str = ""
    failed: str = ""
    runs: dict[str, list[WrkResult]] = field(default_factory=lambda: {p[0]: [] for p in PHASES})
    stream_checks: int = 0
    stream_checks_ok: int = 0
    stream_content_events: list[int] = field(default_factory=list)
    stream_failures: list[str] = field(default_factory=list)


def default_workers() -> int:
    """ATP's gateway default, so every gateway gets the same number of worker processes."""
    try:
        from atp_gateway.settings import GatewaySettings

        return int(GatewaySettings.model_fields["workers"].default)
    except Exception:  # the gateway may not be importable while it is being written
        return 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round (about a minute of load)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unrecorded load per target")
    parser.add_argument("--connections", type=int, default=32, help="concurrency of the throughput runs")
    parser.add_argument(
        "--workers", type=int, default=0, help="worker processes per gateway (default: ATP's)"
    )
    parser.add_argument(
        "--targets",
        default="atp,atp-production,atp-cache,atp-semantic,litellm,portkey",
        help="comma-separated subset of " + ",".join(n for n in TARGETS if n != "direct"),
    )
    parser.add_argument("--stream-samples", type=int, default=20, help="streamed replies checked per target")
    parser.add_argument("--mock-workers", type=int, default=1, help="nginx worker processes (default 1)")
    parser.add_argument("--atp-logs", action="store_true", help="keep ATP's service logs (costs CPU)")
    parser.add_argument("--out", default="", help="JSON output path (default bench/out/bench-<time>.json)")
    parser.add_argument(
        "--baseline-rev",
        default="",
        help="git revision the atp-baseline target runs (add atp-baseline to --targets): prints atp ÷ it",
    )
    args = parser.parse_args(argv)
    if args.baseline_rev:
        os.environ["ATP_BENCH_BASELINE_REV"] = args.baseline_rev
    if args.quick:
        args.duration, args.rounds, args.warmup = 4.0, 1, 1.5
        args.stream_samples = min(args.stream_samples, 10)
    args.workers = args.workers or default_workers()
    return args


def check_target(target: Target, outcome: Outcome, samples: int) -> None:
    """A correct reply before any timing: the mock's text, and every chunk of streamed replies."""
    url, headers = target.endpoint(False)
    status, text = read_completion(url, headers)
    if status != 200 or text != EXPECTED_TEXT:
        raise BenchError(f"non-streamed reply wrong: HTTP {status}: {text[:300]}")
    check_streams(target, outcome, samples)


def check_streams(target: Target, outcome: Outcome, samples: int) -> None:
    """Read `samples` streamed replies in full and count those that delivered every chunk in order."""
    url, headers = target.endpoint(True)
    for _ in range(samples):
        outcome.stream_checks += 1
        try:
            check = read_stream(url, headers)
        except (OSError, ValueError) as exc:
            outcome.stream_failures.append(repr(exc)[:200])
            continue
        outcome.stream_content_events.append(check.content_events)
        if (
            check.status == 200
            and check.text == EXPECTED_TEXT
            and check.done
            and check.finish_reason == "stop"
        ):
            outcome.stream_checks_ok += 1
        elif len(outcome.stream_failures) < 5:
            outcome.stream_failures.append(
                f"HTTP {check.status}, done={check.done}, finish={check.finish_reason}, text={check.text[:120]!r}"
            )


def measure(target: Target, stream: bool, connections: int, duration: float) -> WrkResult:
    url, headers = target.endpoint(stream)
    pids = target.pids()
    tree_before = process_tree(pids)
    cpu_before = cpu_seconds(tree_before)
    result = run_wrk(url, stream=stream, connections=connections, duration_s=duration, headers=headers)
    # Processes that appeared during the run are charged from zero; none are expected.
    result.cpu_s = cpu_seconds(process_tree(pids)) - cpu_before
    return result


def summarize(outcome: Outcome, direct: dict[str, float] | None) -> dict[str, object]:
    runs = outcome.runs
    summary: dict[str, object] = {"name": outcome.name, "description": outcome.description}
    if outcome.failed:
        summary["failed"] = outcome.failed
    thr, lat, stream = runs["throughput"], runs["latency"], runs["stream"]

    def rate(results: list[WrkResult]) -> float | None:
        duration = sum(r.duration_s for r in results)
        return sum(r.requests for r in results) / duration if duration else None

    def cpu_ms(results: list[WrkResult]) -> float | None:
        requests = sum(r.requests for r in results)
        return 1000 * sum(r.cpu_s for r in results) / requests if requests else None

    summary["rps_c32"] = rate(thr)
    summary["p50_ms_c1"] = statistics.median(r.p50_ms for r in lat) if lat else None
    summary["p99_ms_c1"] = statistics.median(r.p99_ms for r in lat) if lat else None
    summary["rps_c1"] = rate(lat)
    summary["stream_rps_c32"] = rate(stream)
    summary["cpu_ms_per_request"] = cpu_ms(thr)
    summary["cpu_ms_per_stream"] = cpu_ms(stream)
    summary["errors"] = sum(r.errors for rs in runs.values() for r in rs)
    summary["non_2xx"] = sum(r.non_2xx for rs in runs.values() for r in rs)
    summary["socket_errors"] = sum(r.socket_errors for rs in runs.values() for r in rs)
    summary["stream_checks"] = f"{outcome.stream_checks_ok}/{outcome.stream_checks}"
    summary["stream_all_chunks"] = (
        outcome.stream_checks > 0 and outcome.stream_checks_ok == outcome.stream_checks
    )
    events = outcome.stream_content_events
    summary["stream_content_events"] = (min(events), max(events)) if events else None
    if outcome.stream_failures:
        summary["stream_failures"] = outcome.stream_failures
    if direct is not None and summary["p50_ms_c1"] is not None:
        summary["added_p50_ms"] = summary["p50_ms_c1"] - direct["p50_ms_c1"]  # type: ignore[operator]
        summary["added_p99_ms"] = summary["p99_ms_c1"] - direct["p99_ms_c1"]  # type: ignore[operator]
    summary["runs"] = {phase: [_run_dict(r) for r in rs] for phase, rs in runs.items()}
    return summary


def _run_dict(result: WrkResult) -> dict[str, object]:
    data = asdict(result)
    data.pop("raw")
    data["rps"] = result.rps
    return data


RATIO_KEYS = (
    ("rps_c32", "throughput"),
    ("stream_rps_c32", "stream throughput"),
    ("added_p50_ms", "added p50"),
    ("added_p99_ms", "added p99"),
    ("cpu_ms_per_request", "CPU/request"),
    ("peak_rss_mb", "peak RSS"),
)


def ratios(atp: dict[str, object], peer: dict[str, object]) -> dict[str, float | None]:
    """ATP ÷ peer per metric (above 1 is better for throughput, below 1 for the rest)."""
    out: dict[str, float | None] = {}
    for key, _ in RATIO_KEYS:
        a, b = atp.get(key), peer.get(key)
        out[key] = a / b if isinstance(a, float | int) and isinstance(b, float | int) and b > 0 else None
    return out


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(summaries: list[dict[str, object]], report: dict[str, object]) -> None:
    columns = [
        ("target", "name", 0),
        ("req/s c32", "rps_c32", 0),
        ("p50 c1 ms", "p50_ms_c1", 2),
        ("p99 c1 ms", "p99_ms_c1", 2),
        ("+p50 ms", "added_p50_ms", 2),
        ("+p99 ms", "added_p99_ms", 2),
        ("stream req/s", "stream_rps_c32", 0),
        ("chunks ok", "stream_checks", 0),
        ("CPU ms/req", "cpu_ms_per_request", 3),
        ("CPU ms/stream", "cpu_ms_per_stream", 3),
        ("peak RSS MB", "peak_rss_mb", 0),
        ("errors", "errors", 0),
    ]
    rows = [[title for title, _, _ in columns]]
    for s in summaries:
        if s.get("failed") and not s.get("runs", {}).get("throughput"):  # type: ignore[union-attr]
            rows.append([str(s["name"]), "FAILED: " + str(s["failed"]).splitlines()[0][:100]])
            continue
        rows.append([_fmt(s.get(key), digits) for _, key, digits in columns])
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(columns))]
    print()
    for row in rows:
        if len(row) == 2 and row[1].startswith("FAILED"):
            print(f"{row[0]:<{widths[0]}}  {row[1]}")
            continue
        print("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    for atp_name in ATP_TARGETS:
        for peer, r in report.get(f"{atp_name}_vs", {}).items():  # type: ignore[union-attr]
            parts = [f"{label} {_fmt(r[key], 2)}x" for key, label in RATIO_KEYS if r.get(key) is not None]
            print(f"{atp_name} ÷ {peer}: " + ", ".join(parts))
    for s in summaries:
        if s.get("failed"):
            print(f"\n{s['name']} failed: {s['failed']}")
        for failure in s.get("stream_failures", []) or []:  # type: ignore[union-attr]
            print(f"{s['name']} stream check: {failure}")


def machine_info(args: argparse.Namespace) -> dict[str, object]:
    def out(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=REPO)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"

    cpu = "?"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "atp_commit": out(["git", "rev-parse", "--short", "HEAD"]),
        "nginx": out([which("nginx"), "-v"]),
        "wrk": out(["wrk", "--version"]),
        "litellm": LITELLM_VERSION,
        "portkey": PORTKEY_VERSION,
        "workers": args.workers,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": args.connections,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    ensure_debian_tools()
    logdir = Path(tempfile.mkdtemp(prefix="atp-bench-"))
    print(f"bench: logs in {logdir}; gateway workers {args.workers}", flush=True)
    mock = MockUpstream(workers=args.mock_workers)
    mock.start()
    names = ["direct", *[n.strip() for n in args.targets.split(",") if n.strip() and n.strip() != "direct"]]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise SystemExit(f"unknown targets: {unknown}")
    Atp.service_logs = args.atp_logs
    targets: list[Target] = []
    outcomes = {name: Outcome(name) for name in names}
    sampler = RssSampler()
    try:
        for name in names:
            target = TARGETS[name](mock, args.workers, logdir)
            outcome = outcomes[name]
            started = time.monotonic()
            try:
                target.install()
                target.start()
                check_target(target, outcome, args.stream_samples)
            except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                outcome.failed = str(exc)
                print(f"bench: {name} unavailable: {str(exc).splitlines()[0]}", flush=True)
                target.stop()
                continue
            outcome.description = target.description
            print(
                f"bench: {name} ready in {time.monotonic() - started:.1f} s ({target.description})",
                flush=True,
            )
            targets.append(target)
        with sampler:
            for target in targets:
                sampler.watch(target.name, target.pids())
            for target in targets:
                for stream in (False, True):
                    if args.warmup > 0:
                        measure(target, stream, args.connections, args.warmup)
            for round_index in range(args.rounds):
                for phase, stream, connections in PHASES:
                    conc = connections or args.connections
                    # Rotate the order each round so drift and warm-up do not favour one target.
                    shift = round_index % max(1, len(targets))
                    for target in targets[shift:] + targets[:shift]:
                        outcome = outcomes[target.name]
                        if outcome.failed:
                            continue
                        if not target.alive():
                            outcome.failed = f"exited during the run\n{target.failure_detail()}"
                            continue
                        result = measure(target, stream, conc, args.duration)
                        outcome.runs[phase].append(result)
                        print(
                            f"bench: round {round_index + 1}/{args.rounds} {phase:<10} {target.name:<8} "
                            f"{result.rps:>10,.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                            f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                            flush=True,
                        )
            for target in targets:
                if target.alive():
                    check_streams(target, outcomes[target.name], max(1, args.stream_samples // 2))
            sampler.sample()
    finally:
        for target in reversed(targets):
            target.stop()
        mock.stop()

    summaries: list[dict[str, object]] = []
    direct = summarize(outcomes["direct"], None)
    for name in names:
        summary = direct if name == "direct" else summarize(outcomes[name], direct)  # type: ignore[arg-type]
        peak = sampler.peaks.get(name)
        summary["peak_rss_mb"] = peak / 2**20 if peak else None
        summaries.append(summary)
    by_name = {str(s["name"]): s for s in summaries}
    report: dict[str, object] = {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "machine": machine_info(args),
        "targets": summaries,
    }
    # "atp_vs" for the plain target, "atp-production_vs" for the production one: the same fields.
    for atp_name in ATP_TARGETS:
        atp = by_name.get(atp_name)
        if atp and not atp.get("failed"):
            report[f"{atp_name}_vs"] = {
                peer: ratios(atp, by_name[peer])
                for peer in ("litellm", "portkey")
                if peer in by_name and not by_name[peer].get("failed")
            }
    if direct.get("rps_c32"):
        slowest_gateway = [s["rps_c32"] for s in summaries if s["name"] != "direct" and s.get("rps_c32")]
        if slowest_gateway:
            report["mock_headroom"] = direct["rps_c32"] / max(slowest_gateway)  # type: ignore[operator]
    report["variants"] = compare(by_name)
    print_table(summaries, report)
    print_comparisons(report["variants"], by_name)  # type: ignore[arg-type]
    if "mock_headroom" in report:
        print(
            f"\nmock upstream direct: {_fmt(direct['rps_c32'], 0)} req/s at c{args.connections} "
            f"({report['mock_headroom']:.0f}x the fastest gateway; {len(STREAM_WORDS) + 2}-event SSE stream)"
        )
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        report = run(args)
    except BenchError as exc:
        traceback.print_exc()
        raise SystemExit(f"bench: {exc}") from exc
    out = Path(args.out) if args.out else BENCH_DIR / "out" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nbench: results written to {out}")


if __name__ == "__main__":
    main()
