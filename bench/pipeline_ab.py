"""CPU per Generate call in the adapters' pipeline (and per compute_features), this checkout against another
one (`--ref`), in alternated child processes of one run: a hot-path change against the code before it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

from baseline import PACKAGE_ROOTS as SOURCE_DIRS
from mock_upstream import MockUpstream

REPO = Path(__file__).resolve().parents[1]
METRICS = ("json_us", "stream_us", "features_us")
SEGMENTS = 10


def _config(mock_json: str, mock_stream: str) -> dict[str, object]:
    model = {
        "provider_model": "gpt-4o-mini",
        "input_usd_per_mtok": 0.15,
        "output_usd_per_mtok": 0.60,
        "context_window": 128000,
        "capabilities": ["streaming", "json", "tools"],
    }
    return {
        "providers": {
            "mock_json": {"type": "openai", "api_key": "env:ATP_BENCH_UPSTREAM_KEY", "base_url": mock_json},
            "mock_stream": {
                "type": "openai",
                "api_key": "env:ATP_BENCH_UPSTREAM_KEY",
                "base_url": mock_stream,
            },
        },
        "models": {
            "mock-json": {**model, "provider": "mock_json"},
            "mock-stream": {**model, "provider": "mock_stream"},
        },
        "routes": {
            "bench-json": {"candidates": ["mock-json"], "policy": "static"},
            "bench-stream": {"candidates": ["mock-stream"], "policy": "static"},
        },
        "default_route": "bench-json",
    }


async def _child(args: argparse.Namespace) -> dict[str, float]:
    """In the child: one in-process pipeline (no router, the shipper never started) against the mock."""
    from grpc import aio

    from atp.adapters.v1 import adapters_pb2
    from atp.common.v1 import chat_pb2
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
    from atp_common.policy.features import compute_features
    from atp_common.policy.kernel import CompiledPolicy

    config = AtpConfig.model_validate(json.loads(args.config))
    holder = PolicyHolder(config, CompiledPolicy.from_snapshot)
    fleet = ProviderFleet(SecretResolver(environ={"ATP_BENCH_UPSTREAM_KEY": "bench"}), grace_s=1.0)
    providers = await fleet.update(config)
    targets = build_targets(config, providers, CircuitExclusions(holder), Circuits())
    channel = aio.insecure_channel("127.0.0.1:9")  # never used: the shipper is not started
    spool = Spool(tempfile.mkdtemp(prefix="atp-bench-spool-"), 1 << 20)
    shipper = ObservationShipper(
        channel,
        spool,
        queue_size=4 * args.requests,
        batch_size=256,
        interval_s=1.0,
        timeout_s=1.0,
        backoff_max_s=1.0,
    )
    pipeline = GeneratePipeline(
        config,
        holder,
        TargetTable(targets),
        shipper,
        replica_id="bench",
        default_tenant="bench",
        request_timeout_s=30.0,
    )
    messages = [chat_pb2.ChatMessage(role="user", content="Say hello in one short sentence, please.")]

    async def per_call_us(route: str, stream: bool) -> float:
        """The least CPU per call over SEGMENTS runs of requests / SEGMENTS calls: a burst of other work on
        a shared machine spoils a segment, not the figure."""
        request = adapters_pb2.GenerateRequest(model=route, messages=messages, stream=stream)
        for _ in range(args.requests // 10):  # warm-up: pools, caches, first compilations
            async for _reply in pipeline.generate(request):
                pass
        calls = max(args.requests // SEGMENTS, 1)
        best = float("inf")
        for _ in range(SEGMENTS):
            started = time.process_time()
            for _ in range(calls):
                async for _reply in pipeline.generate(request):
                    pass
            best = min(best, (time.process_time() - started) / calls * 1e6)
        return best

    out = {
        "json_us": await per_call_us("bench-json", False),
        "stream_us": await per_call_us("bench-stream", True),
    }
    params = chat_pb2.GenerationParams()
    runs = timeit.repeat(lambda: compute_features(messages, params, False), number=20_000, repeat=5)
    out["features_us"] = min(runs) / 20_000 * 1e6
    await fleet.close()
    await channel.close()
    return out


def _run_child(tree: Path | None, config: str, requests: int) -> dict[str, float]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(str(tree / d) for d in SOURCE_DIRS)
    cmd = [sys.executable, __file__, "--child", "--config", config, "--requests", str(requests)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child ({tree or 'this checkout'}) failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--ref", type=Path, help="the other checkout (for example a `git archive` of a commit)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternated rounds (each: one child per checkout)"
    )
    parser.add_argument("--requests", type=int, default=2000, help="Generate calls per mode per child")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args))))
        return
    if args.ref is None or not (args.ref / "libs" / "common" / "atp_common").is_dir():
        parser.error("--ref must be a checkout of ATP")
    results: dict[str, list[dict[str, float]]] = {"this": [], "ref": []}
    with MockUpstream() as mock:
        config = json.dumps(_config(mock.base_url(False), mock.base_url(True)))
        for round_no in range(args.rounds):
            order = ("this", "ref") if round_no % 2 == 0 else ("ref", "this")
            for name in order:
                row = _run_child(None if name == "this" else args.ref, config, args.requests)
                results[name].append(row)
                cells = "  ".join(f"{m} {row[m]:8.2f}" for m in METRICS)
                print(f"round {round_no + 1}/{args.rounds} {name:4s}  {cells}", flush=True)
    for metric in METRICS:
        for label, pick in (("median", statistics.median), ("best", min)):
            this = pick(r[metric] for r in results["this"])
            ref = pick(r[metric] for r in results["ref"])
            print(f"{metric:12s} {label:6s} this {this:8.2f}  ref {ref:8.2f}  this ÷ ref {this / ref:.3f}")


if __name__ == "__main__":
    main()
