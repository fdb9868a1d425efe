"""CPU per Generate call in the adapters' pipeline with the production settings' admission, ingredient by
ingredient: no limits, leased admission on the in-process store, leased admission on the real Redis, one Redis
call per request; alternated child processes of one run, this checkout against another (`--ref`) when given."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mock_upstream import MockUpstream
from pipeline_ab import SEGMENTS, SOURCE_DIRS, _config

VARIANTS = ("none", "memory", "redis", "redis-per-request", "redis-lease<N>")
METRICS = ("json_us", "stream_us")
REDIS_URL = os.environ.get("ATP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# As the production bench sets them: far above the load, so nothing is refused.
LIMITS = {"requests_per_minute": 10_000_000, "tokens_per_minute": 10_000_000_000, "daily_budget_usd": 1e6}


def _limiter(variant: str) -> object:
    from atp_adapters.limits import Limiter, MemoryBackend, RedisBackend

    prefix = f"benchab{secrets.token_hex(4)}:"
    if variant == "memory":
        return Limiter(MemoryBackend(), prefix=prefix)
    # redis-lease<N>: leases of N requests' worth instead of the default.
    lease = 0 if variant == "redis-per-request" else None
    if variant.startswith("redis-lease"):
        lease = int(variant.removeprefix("redis-lease"))
    return Limiter(RedisBackend(REDIS_URL, timeout_s=0.25), prefix=prefix, lease_requests=lease)


async def _child(args: argparse.Namespace) -> dict[str, float]:
    """In the child: one in-process pipeline (no router, the shipper never started) with the variant's
    admission; `send_metadata` is a coroutine that keeps the headers, as the servicer's Complete does."""
    from grpc import aio

    from atp.adapters.v1 import adapters_pb2
    from atp.common.v1 import chat_pb2
    from atp_adapters.admission import Admission
    from atp_adapters.circuit_exclusions import CircuitExclusions
    from atp_adapters.fleet import ProviderFleet
    from atp_adapters.pipeline import GeneratePipeline
    from atp_adapters.policy_watch import PolicyHolder
    from atp_adapters.resilience import Circuits
    from atp_adapters.secrets import SecretResolver
    from atp_adapters.shipper import ObservationShipper
    from atp_adapters.spool import Spool
    from atp_adapters.targets import TargetTable, build_targets
    from atp_common.config import AtpConfig
    from atp_common.limits.directory import DirectoryFollower, FileDirectoryStore
    from atp_common.policy.kernel import CompiledPolicy

    document = json.loads(args.config)
    document["tenants"] = {"bench": dict(LIMITS)}
    config = AtpConfig.model_validate(document)
    holder = PolicyHolder(config, CompiledPolicy.from_snapshot)
    fleet = ProviderFleet(SecretResolver(environ={"ATP_BENCH_UPSTREAM_KEY": "bench"}), grace_s=1.0)
    providers = await fleet.update(config)
    table = TargetTable(build_targets(config, providers, CircuitExclusions(holder), Circuits()))
    channel = aio.insecure_channel("127.0.0.1:9")  # never used: the shipper is not started
    spool = Spool(tempfile.mkdtemp(prefix="atp-bench-spool-"), 1 << 20)
    shipper = ObservationShipper(
        channel,
        spool,
        queue_size=8 * args.requests,
        batch_size=256,
        interval_s=1.0,
        timeout_s=1.0,
        backoff_max_s=1.0,
    )
    admission = None
    limiter = None
    if args.variant != "none":
        limiter = _limiter(args.variant)
        limiter.start()  # type: ignore[attr-defined]
        follower = DirectoryFollower(config, FileDirectoryStore(os.devnull))
        admission = Admission(limiter, follower, table, default_output_tokens=256)  # type: ignore[arg-type]
    pipeline = GeneratePipeline(
        config,
        holder,
        table,
        shipper,
        replica_id="bench",
        default_tenant="bench",
        request_timeout_s=30.0,
        admission=admission,
    )
    messages = [chat_pb2.ChatMessage(role="user", content="Say hello in one short sentence, please.")]
    kept: list[tuple[tuple[str, str], ...]] = []

    async def keep(headers: tuple[tuple[str, str], ...]) -> None:
        kept.append(headers)
        del kept[:-1]

    async def per_call_us(route: str, stream: bool) -> float:
        request = adapters_pb2.GenerateRequest(model=route, messages=messages, stream=stream, tenant="bench")
        for _ in range(args.requests // 10):
            async for _reply in pipeline.generate(request, None, keep):
                pass
        calls = max(args.requests // SEGMENTS, 1)
        best = float("inf")
        for _ in range(SEGMENTS):
            started = time.process_time()
            for _ in range(calls):
                async for _reply in pipeline.generate(request, None, keep):
                    pass
            best = min(best, (time.process_time() - started) / calls * 1e6)
        return best

    out = {
        "json_us": await per_call_us("bench-json", False),
        "stream_us": await per_call_us("bench-stream", True),
    }
    if args.variant != "none" and not kept:
        raise SystemExit("admission sent no x-ratelimit-* values: the tenant's limits were not applied")
    if limiter is not None:
        await limiter.close()  # type: ignore[attr-defined]
    await fleet.close()
    await channel.close()
    return out


def _run_child(tree: Path | None, variant: str, config: str, requests: int) -> dict[str, float]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(str(tree / d) for d in SOURCE_DIRS)
    cmd = [sys.executable, __file__, "--child", "--variant", variant, "--config", config]
    cmd += ["--requests", str(requests)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child {variant} ({tree or 'this checkout'}) failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ref", type=Path, help="another checkout: its children alternate with this one's")
    parser.add_argument("--variants", default=",".join(VARIANTS[:3]), help="of " + ",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000, help="Generate calls per mode per child")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args))))
        return
    trees: dict[str, Path | None] = {"this": None}
    if args.ref is not None:
        trees["ref"] = args.ref
    runs = [(tree, v) for v in args.variants.split(",") for tree in trees]
    results: dict[tuple[str, str], list[dict[str, float]]] = {run: [] for run in runs}
    with MockUpstream() as mock:
        config = json.dumps(_config(mock.base_url(False), mock.base_url(True)))
        for round_no in range(args.rounds):
            for tree, variant in runs if round_no % 2 == 0 else runs[::-1]:
                row = _run_child(trees[tree], variant, config, args.requests)
                results[(tree, variant)].append(row)
                cells = "  ".join(f"{m} {row[m]:8.2f}" for m in METRICS)
                print(f"round {round_no + 1}/{args.rounds} {tree:4s} {variant:18s} {cells}", flush=True)
    base = statistics.median
    for metric in METRICS:
        none = {t: base(r[metric] for r in results[(t, "none")]) for t in trees if (t, "none") in results}
        for tree, variant in runs:
            value = base(r[metric] for r in results[(tree, variant)])
            added = f"  added {value - none[tree]:7.2f}" if tree in none else ""
            print(f"{metric:10s} median {tree:4s} {variant:18s} {value:8.2f}{added}")
        if "ref" in trees:
            for variant in args.variants.split(","):
                this = base(r[metric] for r in results[("this", variant)])
                ref = base(r[metric] for r in results[("ref", variant)])
                print(f"{metric:10s} {variant:18s} this ÷ ref {this / ref:.3f}")


if __name__ == "__main__":
    main()
