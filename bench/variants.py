"""Variants of ATP's plain target measured beside it: response-cache hits and a route with semantic features."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from harness import BenchError, chat_body, post
from production import ALL_TARGETS as PRODUCTION_TARGETS
from targets import Atp, Target

# Routes the bench's requests name (bench/wrk/*.lua and harness.chat_body).
BENCH_ROUTES = ("bench-json", "bench-stream")


class AtpCache(Atp):
    """The plain target with the response cache on both routes: after the first request of each kind every
    request is a hit (wrk sends one body), so this measures the hit path alone."""

    name = "atp-cache"
    # The bench's body sets no temperature (sampled), so the route must accept storing sampled replies.
    CACHE = {"ttl_s": 86400.0, "sampled": True}

    def configure(self, config: dict[str, Any]) -> None:
        for route in BENCH_ROUTES:
            config["routes"][route]["cache"] = dict(self.CACHE)

    def start(self) -> None:
        super().start()
        url, headers = self.endpoint(False)
        for stream in (False, True):
            outcome = ""
            for _ in range(2):  # the first stores the reply, the second must be served from the cache
                status, reply_headers, _body = post(url, chat_body(stream), headers)
                outcome = reply_headers.get("x-atp-cache", "") if status == 200 else f"HTTP {status}"
            if outcome != "hit":
                raise BenchError(f"{self.name}: the second identical request was not a cache hit: {outcome}")
        self.description += (
            f"; response cache {self.CACHE} on {', '.join(BENCH_ROUTES)} (every request a hit)"
        )


class AtpLinucb(Atp):
    """The plain target's routes with two candidates on the mock under LinUCB (learning from the run's
    observations): the baseline that isolates what semantic features add."""

    name = "atp-linucb"
    SEMANTIC = False

    def configure(self, config: dict[str, Any]) -> None:
        models = config["models"]
        for route in BENCH_ROUTES:
            first = config["routes"][route]["candidates"][0]
            twin = f"{first}-b"
            models[twin] = copy.deepcopy(models[first])
            config["routes"][route].update(candidates=[first, twin], policy="linucb", semantic=self.SEMANTIC)

    def start(self) -> None:
        super().start()
        features = "semantic features (the shipped projection)" if self.SEMANTIC else "no semantic features"
        self.description += f"; routes: 2 candidates, linucb, {features}"


class AtpSemantic(AtpLinucb):
    """The LinUCB routes with `semantic: true`: every request's prompt embedded and projected."""

    name = "atp-semantic"
    SEMANTIC = True


class AtpRef(Atp):
    """The plain target running another checkout's code (`ATP_BENCH_REF_TREE`, for example a `git archive`
    of the commit before a change) with this checkout's interpreter and dependencies: a change measured
    against the code before it in the same interleaved run."""

    name = "atp-ref"
    # Where the packages live in a checkout (pyproject's packages.find), ahead of the editable install.
    SOURCE_DIRS = (
        "libs/common",
        "services/gateway",
        "services/router",
        "services/observer",
        "services/adapters",
        "tools",
    )

    def _tree(self) -> Path:
        tree = Path(os.environ.get("ATP_BENCH_REF_TREE", ""))
        if not (tree / "libs" / "common" / "atp_common").is_dir():
            raise BenchError("atp-ref: set ATP_BENCH_REF_TREE to a checkout of ATP (git archive of a commit)")
        return tree

    def install(self) -> None:
        super().install()
        self._tree()

    def settings(self) -> tuple[dict[str, float], dict[str, str], list[str]]:
        limits, env, flags = super().settings()
        path = os.pathsep.join(str(self._tree() / d) for d in self.SOURCE_DIRS)
        return limits, {**env, "PYTHONPATH": path}, flags

    def start(self) -> None:
        super().start()
        self.description += f"; code from {self._tree()}"


ALL_TARGETS: dict[str, type[Target]] = {
    **PRODUCTION_TARGETS,
    "atp-cache": AtpCache,
    "atp-linucb": AtpLinucb,
    "atp-semantic": AtpSemantic,
    "atp-ref": AtpRef,
}

# Each variant against the target it varies, measured in the same run: (variant, baseline).
COMPARISONS = (
    ("atp", "atp-ref"),
    ("atp-cache", "atp"),
    ("atp-linucb", "atp"),
    ("atp-semantic", "atp"),
    ("atp-semantic", "atp-linucb"),
)


def _ratio(a: object, b: object) -> float | None:
    ok = isinstance(a, float | int) and isinstance(b, float | int) and b > 0
    return a / b if ok else None  # type: ignore[operator]


def _delta(a: object, b: object) -> float | None:
    ok = isinstance(a, float | int) and isinstance(b, float | int)
    return a - b if ok else None  # type: ignore[operator]


def compare(by_name: dict[str, dict[str, object]]) -> dict[str, dict[str, float | None]]:
    """Each measured variant against its baseline: throughput ratios and latency / CPU differences."""
    out: dict[str, dict[str, float | None]] = {}
    for variant, baseline in COMPARISONS:
        v, b = by_name.get(variant), by_name.get(baseline)
        if not v or not b or v.get("failed") or b.get("failed"):
            continue
        out[f"{variant}_vs_{baseline}"] = {
            "throughput": _ratio(v.get("rps_c32"), b.get("rps_c32")),
            "stream_throughput": _ratio(v.get("stream_rps_c32"), b.get("stream_rps_c32")),
            "p50_ms_delta": _delta(v.get("p50_ms_c1"), b.get("p50_ms_c1")),
            "p99_ms_delta": _delta(v.get("p99_ms_c1"), b.get("p99_ms_c1")),
            "cpu_ms_per_request_delta": _delta(v.get("cpu_ms_per_request"), b.get("cpu_ms_per_request")),
        }
    return out


def _fmt(value: float | None, unit: str, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f} {unit}" if unit != "x" else f"{value:.{digits}f}x"


def print_comparisons(comparisons: dict[str, dict[str, float | None]], by_name: dict[str, Any]) -> None:
    """One line per variant, and the cache's two targets stated against their figures."""
    for key, c in comparisons.items():
        variant, baseline = key.split("_vs_")
        print(
            f"{variant} ÷ {baseline} (same run): throughput {_fmt(c['throughput'], 'x')}, "
            f"stream {_fmt(c['stream_throughput'], 'x')}, p50 c1 {_fmt(c['p50_ms_delta'], 'ms')}, "
            f"p99 c1 {_fmt(c['p99_ms_delta'], 'ms')}, CPU/request {_fmt(c['cpu_ms_per_request_delta'], 'ms', 3)}"
        )
    cache = comparisons.get("atp-cache_vs_atp")
    hit = by_name.get("atp-cache") or {}
    if cache is not None:
        added = hit.get("added_p50_ms")
        print(
            f"cache hits: {_fmt(cache['throughput'], 'x')} the uncached throughput (target at least 3x); "
            f"a hit's p50 at c1 {hit.get('p50_ms_c1', 0):.2f} ms, "
            f"{'-' if added is None else f'{added:.2f}'} ms above the mock's own (target under 1 ms)"
        )
