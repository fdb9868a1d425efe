"""Memory soak: wrk load on ATP's full path while the RSS of every service process is sampled."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BENCH_DIR, BenchError, cmdline, process_tree, rss_bytes, run_wrk
from mock_upstream import MockUpstream
from run import default_workers
from targets import Atp

_SERVICE = re.compile(r"-m (atp_\w+)")


def label(pid: int, parent_labels: dict[int, str]) -> str:
    """The service a process belongs to: its `-m atp_x` module, or its parent's label for workers."""
    match = _SERVICE.search(cmdline(pid))
    if match:
        return match.group(1)
    return parent_labels.get(pid, f"pid-{pid}")


def snapshot(atp: Atp) -> dict[str, int]:
    """RSS in bytes per service process (workers labelled after their service, with their pid)."""
    labels: dict[int, str] = {}
    out: dict[str, int] = {}
    for root in atp.pids():
        name = label(root, {})
        for pid in process_tree([root]):
            labels[pid] = name if pid == root else f"{name}-worker-{pid}"
            out[labels[pid]] = rss_bytes(pid)
    return out


def growth(samples: list[tuple[float, dict[str, int]]], warmup_s: float) -> dict[str, dict[str, float]]:
    """Per process: RSS at the end of warm-up, at the end, peak, growth % and slope in MB per hour."""
    after = [(t, s) for t, s in samples if t >= warmup_s]
    report: dict[str, dict[str, float]] = {}
    names = sorted({name for _, s in after for name in s} | {"total"})
    for name in names:
        series = [(t, s.get(name, 0) if name != "total" else sum(s.values())) for t, s in after]
        series = [(t, v) for t, v in series if v > 0]
        if len(series) < 2:
            continue
        # Median of the first and last few samples, so one GC pause or allocation burst does not decide.
        k = max(1, min(3, len(series) // 4))
        start = statistics.median(v for _, v in series[:k])
        end = statistics.median(v for _, v in series[-k:])
        times = [t for t, _ in series]
        values = [v for _, v in series]
        slope = statistics.linear_regression(times, values).slope if len(set(times)) > 1 else 0.0
        report[name] = {
            "rss_after_warmup_mb": start / 2**20,
            "rss_end_mb": end / 2**20,
            "rss_peak_mb": max(values) / 2**20,
            "growth_pct": 100 * (end - start) / start,
            "slope_mb_per_hour": slope * 3600 / 2**20,
        }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples (>= 1)")
    parser.add_argument("--warmup-fraction", type=float, default=0.2, help="share of the run not judged")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="gateway workers (default: ATP's)")
    parser.add_argument("--out", default="", help="JSON output (default bench/out/soak-<time>.json)")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()

    logdir = Path(tempfile.mkdtemp(prefix="atp-soak-"))
    mock = MockUpstream()
    atp = Atp(mock, workers, logdir)
    samples: list[tuple[float, dict[str, int]]] = []
    totals = {"requests": 0, "errors": 0}
    try:
        mock.start()
        atp.install()
        atp.start()
        print(
            f"soak: ATP up ({atp.description}); {args.duration:.0f} s of load, logs in {logdir}", flush=True
        )
        started = time.monotonic()
        deadline = started + args.duration
        stream = False
        while (remaining := deadline - time.monotonic()) >= 1:
            if not atp.alive():
                raise BenchError(f"ATP exited during the soak\n{atp.failure_detail()}")
            # Load runs in segments of one sampling interval, so RSS is read between them, and the
            # segments alternate non-streamed and streamed requests (both paths hold buffers).
            url, headers = atp.endpoint(stream)
            result = run_wrk(
                url,
                stream=stream,
                connections=args.connections,
                duration_s=min(args.interval, remaining),
                headers=headers,
            )
            totals["requests"] += result.requests
            totals["errors"] += result.errors
            stream = not stream
            elapsed = time.monotonic() - started
            snap = snapshot(atp)
            samples.append((elapsed, snap))
            total = sum(snap.values()) / 2**20
            print(
                f"soak: {elapsed:6.0f} s  total RSS {total:7.1f} MB  requests {totals['requests']:,}",
                flush=True,
            )
    finally:
        atp.stop()
        mock.stop()

    warmup_s = args.duration * args.warmup_fraction
    report = {
        "command": " ".join(["bench/soak.py", *sys.argv[1:]]),
        "duration_s": args.duration,
        "warmup_s": warmup_s,
        "workers": workers,
        "requests": totals["requests"],
        "errors": totals["errors"],
        "growth": growth(samples, warmup_s),
        "samples": [{"t": round(t, 1), "rss": s} for t, s in samples],
    }
    print(
        f"\nsoak: {totals['requests']:,} requests, {totals['errors']} errors; RSS after warm-up ({warmup_s:.0f} s):"
    )
    for name, g in report["growth"].items():  # type: ignore[union-attr]
        print(
            f"  {name:<28} {g['rss_after_warmup_mb']:8.1f} MB -> {g['rss_end_mb']:8.1f} MB  "
            f"({g['growth_pct']:+.2f}%, peak {g['rss_peak_mb']:.1f} MB, {g['slope_mb_per_hour']:+.1f} MB/h)"
        )
    total = report["growth"].get("total")  # type: ignore[union-attr]
    if total is not None:
        verdict = "within" if total["growth_pct"] < 5 else "OVER"
        print(f"soak: total growth {total['growth_pct']:+.2f}% ({verdict} the 5% target)")
    out = Path(args.out) if args.out else BENCH_DIR / "out" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"soak: results written to {out}")


if __name__ == "__main__":
    main()
