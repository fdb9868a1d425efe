"""atp-train and atp-eval ope: fitting artifacts, and off-policy estimates against known true values."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import pytest
import yaml

from atp_common.policy.artifact import load_artifact
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.evaluation import commands
from atp_router.evaluation.cli import run_replay
from atp_router.evaluation.dataset import load_dataset
from atp_router.evaluation.logs import LoggedOutcome, outcomes, read_reward_events
from atp_router.evaluation.offline import ROUTE, RouteOptions, eval_config, replay_in_process
from atp_router.evaluation.ope import estimate
from atp_router.evaluation.replay import replay_over_grpc
from atp_router.evaluation.report import QUALITY_FLOOR_GRID
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from atp_router.training import cli as train_cli
from tests.support.evaluation_data import STRONG, WEAK, write_dataset

TIMEOUT = 10.0


def test_atp_train_writes_an_artifact_that_a_route_starts_from(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 80)
    out = tmp_path / "router.json"
    summary = train_cli.run(["--dataset", str(data), "--out", str(out), "--semantic-dim", "4"])
    artifact = load_artifact(out)
    assert summary["artifact_digest"] == artifact.digest()
    assert set(artifact.models) == {STRONG, WEAK} and artifact.semantic_dim == 4
    assert str(artifact.training["digest"]).startswith("sha256:") and artifact.training["rows"] == 80
    # The strong model is right more often in the data: the fit says so on an average request.
    assert artifact.models[STRONG].theta[0] != artifact.models[WEAK].theta[0]
    dataset = load_dataset(data)
    options = RouteOptions(artifact=str(out), exploration=0.0, max_tokens=1)
    assert replay_in_process(dataset, 0.0, options=options).count(STRONG) > 40


def _synthetic(n: int, seed: int, epsilon: float) -> list[LoggedOutcome]:
    """Contexts u ~ U(0, 1); quality of `a` is Bernoulli(0.3 + 0.5u), of `b` Bernoulli(0.7 - 0.4u); the
    logging policy prefers `a`, mixing in a uniform draw with probability epsilon (true propensities)."""
    rng = random.Random(seed)
    logged = []
    for _ in range(n):
        u = rng.random()
        chosen = rng.choice("ab") if rng.random() < epsilon else "a"
        propensity = 1.0 - epsilon / 2 if chosen == "a" else epsilon / 2
        mean = 0.3 + 0.5 * u if chosen == "a" else 0.7 - 0.4 * u
        quality = 1.0 if rng.random() < mean else 0.0
        logged.append(LoggedOutcome((1.0, u), chosen, propensity, quality, quality))
    return logged


def _switch(vector: tuple[float, ...] | list[float]) -> dict[str, float]:
    return {"b": 1.0} if vector[1] < 0.5 else {"a": 1.0}


# E[quality] of _switch: the integral of 0.7 - 0.4u over [0, .5] plus 0.3 + 0.5u over [.5, 1].
TRUE_SWITCH_VALUE = (0.35 - 0.05) + (0.15 + 0.25 * 0.75)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ope_intervals_hold_the_true_value_of_a_synthetic_environment(seed: int) -> None:
    report = estimate(_synthetic(4000, seed, 0.4), _switch, samples=400, seed=seed)
    assert report["records"] == 4000
    # The logging policy's own value is far from the target's: the estimators must correct for it.
    assert abs(float(report["logged_mean"]) - TRUE_SWITCH_VALUE) > 0.03  # type: ignore[arg-type]
    for name in ("ips", "snips", "doubly_robust"):
        row = report[name]
        assert isinstance(row, dict)
        assert row["low"] <= TRUE_SWITCH_VALUE <= row["high"], (name, row)
        assert row["high"] - row["low"] < 0.1
    assert math.isclose(float(report["matching_share"]), 0.5, abs_tol=0.05)  # type: ignore[arg-type]


async def test_ope_and_training_read_a_replays_logs_from_the_observer(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "d.jsonl", 60))
    options = RouteOptions(epsilon=0.3, max_tokens=1)
    config = eval_config(dataset, cost_weight=100.0, options=options)
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
    try:
        await replay_over_grpc(
            dataset,
            router.address,
            observer.address,
            timeout_s=TIMEOUT,
            sync_every=1,
            params=options.params(),
        )
        logged = outcomes(await read_reward_events(observer.address, ROUTE, timeout_s=TIMEOUT))
        assert len(logged) == 60
        assert {round(o.propensity, 6) for o in logged} <= {0.85, 0.15}

        candidate = tmp_path / "candidate.yaml"
        strong_only = eval_config(dataset, cost_weight=0.0, options=RouteOptions(policy="static"))
        data = strong_only.model_dump(mode="json")
        data["routes"][ROUTE]["candidates"] = [STRONG, WEAK]
        candidate.write_text(yaml.safe_dump(data))
        report, text = await asyncio.to_thread(
            commands.run_ope,
            [
                "--observer",
                observer.address,
                "--route",
                ROUTE,
                "--candidate",
                str(candidate),
                "--value",
                "quality",
            ],
        )
        assert "doubly_robust" in text and report["records"] == 60
        # The candidate always sends the strong model; IPS sees only the logged strong choices.
        truth = sum(p.quality[STRONG] for p in dataset.prompts) / 60
        ips = report["ips"]
        assert isinstance(ips, dict) and ips["low"] <= truth + 0.25 and ips["high"] >= truth - 0.25

        out = tmp_path / "from_logs.json"
        summary = await asyncio.to_thread(
            train_cli.run, ["--observer", observer.address, "--route", ROUTE, "--out", str(out)]
        )
        assert summary["rows"] == 60 and "importance-weighted" in str(summary["source"])
        assert load_artifact(out).semantic_dim == 0
    finally:
        await router.stop_now()
        await observer.stop_now()


def test_atp_eval_sweeps_the_quality_floor_of_a_trained_route(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 60)
    artifact = tmp_path / "router.json"
    train_cli.run(["--dataset", str(data), "--out", str(artifact), "--semantic-dim", "4"])
    flags = ["--cost-weights", "0.5,0.9,1.0", "--max-tokens", "1", "--plot", "", "--workers", "1"]
    report = run_replay(
        ["--dataset", str(data), "--offline", "--artifact", str(artifact), "--knob", "quality_floor", *flags]
    )
    assert report["knob"] == "quality_floor" and len(report["sweep"]) == 3  # type: ignore[arg-type]
    shares = [row["strong_share"] for row in report["sweep"]]  # type: ignore[attr-defined]
    # A higher floor keeps more requests on the model predicted best: the strong share never falls.
    assert shares == sorted(shares) and shares[0] < shares[-1]
    assert 0.0 <= float(report["apgr"]) <= 1.5  # type: ignore[arg-type]


def test_the_floor_knob_sweeps_fractions_by_default_and_refuses_others(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 40)
    artifact = tmp_path / "router.json"
    train_cli.run(["--dataset", str(data), "--out", str(artifact), "--semantic-dim", "4"])
    base = ["--dataset", str(data), "--offline", "--artifact", str(artifact), "--knob", "quality_floor"]
    report = run_replay([*base, "--max-tokens", "1", "--plot", "", "--workers", "1"])
    # Without --cost-weights the floor knob sweeps floors (the cost-weight grid held values above 1,
    # which the route's configuration refuses).
    floors = [row["cost_weight"] for row in report["sweep"]]  # type: ignore[attr-defined]
    assert floors == list(QUALITY_FLOOR_GRID)
    for bad in (["--cost-weights", "0.5,2"], ["--quality-floor", "1.5"]):
        with pytest.raises(SystemExit) as refused:
            run_replay([*base, *bad])
        assert refused.value.code == 2
