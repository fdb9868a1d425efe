"""atp-eval end to end: a small dataset replayed through real router and observer servers over gRPC."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_common.channels import open_channel
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.evaluation import cli
from atp_router.evaluation.dataset import load_dataset
from atp_router.evaluation.offline import ROUTE, eval_config, replay_in_process
from atp_router.evaluation.replay import replay_over_grpc
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from tests.support.evaluation_data import write_dataset

TIMEOUT = 10.0


async def test_replay_through_real_router_and_observer(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "d.jsonl", 60))
    config = eval_config(dataset, cost_weight=100.0)
    observer = await build_observer(
        ObserverSettings(port=0, metrics_port=None, sqlite_path=str(tmp_path / "o.sqlite3")), config=config
    )
    router = await build_router(
        RouterSettings(
            port=0,
            metrics_port=None,
            observer_addr=observer.address,
            reload_on_sighup=False,
            snapshot_min_interval_s=0.01,
            drain_delay_s=0.0,
            seed=1,
        ),
        config=config,
    )
    channels = [open_channel(observer.address), open_channel(router.address)]
    try:
        choices = await replay_over_grpc(
            dataset, router.address, observer.address, timeout_s=TIMEOUT, sync_every=1
        )
        assert len(choices) == 60 and set(choices) <= set(dataset.models)
        # Waiting for each outcome to be learned and published makes the services decide exactly as the
        # kernel and learner do in-process: every decision is the same.
        assert choices == replay_in_process(dataset, 100.0, republish_every=1)
        assert len(set(choices)) == 2  # it tried both models

        # Every outcome reached the observer, and the feedback replaced the proxy quality of each one.
        stats = await observer_pb2_grpc.ObserverServiceStub(channels[0]).GetArmStats(
            observer_pb2.GetArmStatsRequest(route=ROUTE), timeout=TIMEOUT
        )
        overall = {row.model: row for row in stats.arms if not row.tenant}
        assert sum(row.pulls for row in overall.values()) == 60
        for model, row in overall.items():
            picked = [p for p, c in zip(dataset.prompts, choices, strict=True) if c == model]
            assert row.pulls == len(picked)
            assert row.quality_sum == pytest.approx(sum(p.quality[model] for p in picked))
            assert row.cost_sum == pytest.approx(sum(dataset.cost(p, model) for p in picked))

        # The router learned all of it from the reward stream and published it.
        watch = router_pb2_grpc.RouterServiceStub(channels[1]).WatchPolicy(
            router_pb2.WatchPolicyRequest(replica_id="test"), timeout=TIMEOUT
        )

        async def learned() -> list[router_pb2.ArmState]:
            async for response in watch:
                arms = list(next(r for r in response.snapshot.routes if r.name == ROUTE).arms)
                if sum(a.pulls for a in arms) == 60:
                    return arms
            raise AssertionError("policy stream ended")

        try:
            arms = await asyncio.wait_for(learned(), TIMEOUT)
        finally:
            watch.cancel()
        for arm in arms:
            assert arm.pulls == choices.count(arm.model)
            assert len(arm.a_inv) > 0  # the contextual regression travels in the snapshot
    finally:
        for channel in channels:
            await channel.close()
        await router.stop_now()
        await observer.stop_now()


def test_cli_spawns_the_services_and_prints_one_json_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_dataset(tmp_path / "d.jsonl", 40)
    png = tmp_path / "curve.png"
    cli.main(
        [
            "--dataset",
            str(path),
            "--spawn",
            "--json",
            "--workers",
            "1",
            "--cost-weights",
            "20,200,2000",
            "--refine",
            "0",
            "--plot",
            str(png),
        ]
    )
    report = orjson.loads(capsys.readouterr().out)
    assert report["through"] == "router+observer over gRPC"
    assert report["prompts"] == 40
    for key in ("accuracy", "cost_usd", "strong_share", "cost_saved_at_95", "cpt50", "cpt80", "apgr"):
        assert key in report, key
    assert set(report["baselines"]) == {"gpt-4-1106-preview", "mixtral-8x7b-instruct", "random", "oracle"}
    assert 0.0 <= report["strong_share"] <= 1.0
    assert len(report["sweep"]) == 3
    assert png.read_bytes().startswith(b"\x89PNG")


def test_cli_synthetic_prints_regret(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["synthetic", "--steps", "300", "--seeds", "0", "--json"])
    report = orjson.loads(capsys.readouterr().out)
    names = {row["environment"] for row in report["results"]}
    assert names == {"bernoulli", "gaussian", "degrading", "price-change"}
    for row in report["results"]:
        assert row["regret_vs_oracle"] >= row["regret_vs_best_fixed"] - 1e-9
