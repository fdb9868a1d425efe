"""atp-eval's metrics on hand-computed cases, the dataset loader, the in-process replay and synthetic regret."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from atp_router.evaluation import cli, metrics, synthetic
from atp_router.evaluation.dataset import Prompt, load_dataset, parse_prices
from atp_router.evaluation.offline import replay_in_process
from atp_router.evaluation.report import SweepPoint, build_report, cost_weight_grid
from tests.support.evaluation_data import STRONG, WEAK, write_dataset


def test_pgr_cpt_and_apgr_on_a_hand_computed_curve() -> None:
    # weak 0.5, strong 1.0; routers at (share 0.2, acc 0.6) and (0.6, 0.9): PGR 0.2 and 0.8.
    points = [(0.2, 0.6), (0.6, 0.9)]
    assert metrics.pgr(0.75, 0.5, 1.0) == pytest.approx(0.5)
    # PGR 0.5 lies between (0.2, 0.2) and (0.6, 0.8): 0.2 + 0.3 * 0.4 / 0.6 = 0.4.
    assert metrics.cpt(points, 0.5, 1.0, 0.5) == pytest.approx(0.4)
    assert metrics.cpt(points, 0.5, 1.0, 0.8) == pytest.approx(0.6)
    assert metrics.cpt(points, 0.5, 1.0, 0.1) == pytest.approx(0.1)  # on the segment from (0, 0)
    # Trapezoids: 0.2 * 0.1 + 0.4 * 0.5 + 0.4 * 0.9 = 0.58.
    assert metrics.apgr(points, 0.5, 1.0) == pytest.approx(0.58)


def test_random_routing_is_the_diagonal() -> None:
    diagonal = [(s / 10, 0.5 + 0.5 * s / 10) for s in range(1, 10)]
    assert metrics.apgr(diagonal, 0.5, 1.0) == pytest.approx(0.5)
    assert metrics.cpt(diagonal, 0.5, 1.0, 0.5) == pytest.approx(0.5)
    assert metrics.cpt(diagonal, 0.5, 1.0, 0.8) == pytest.approx(0.8)
    assert metrics.apgr([], 0.5, 1.0) == pytest.approx(0.5)  # only the two single models


def test_cpt_takes_the_first_crossing_and_apgr_the_best_point_per_share() -> None:
    # A curve that overshoots then falls back: CPT is where it first reaches the level.
    points = [(0.3, 0.95), (0.5, 0.7), (0.5, 0.6)]
    assert metrics.cpt(points, 0.5, 1.0, 0.8) == pytest.approx(0.3 * 0.8 / 0.9)
    # PGR by share: 0 -> 0, 0.3 -> 0.9, 0.5 -> max(0.4, 0.2), 1 -> 1.
    expected = 0.3 * 0.45 + 0.2 * (0.9 + 0.4) / 2 + 0.5 * (0.4 + 1.0) / 2
    assert metrics.apgr(points, 0.5, 1.0) == pytest.approx(expected)


def test_cost_saved_at_a_target_accuracy() -> None:
    weak, strong = (1.0, 0.5), (11.0, 1.0)
    # Target 0.95 lies between (3, 0.9) and the strong model: 3 + 0.05 * 8 / 0.1 = 7.
    cost = metrics.cost_at_accuracy([(3.0, 0.9)], 0.95, weak, strong)
    assert cost == pytest.approx(7.0)
    assert metrics.cost_saved(cost, 11.0) == pytest.approx(4 / 11)
    # Target 0.8 lies between the weak model and (3, 0.9): 1 + 0.3 * 2 / 0.4 = 2.5.
    assert metrics.cost_at_accuracy([(3.0, 0.9)], 0.8, weak, strong) == pytest.approx(2.5)
    # Nothing reaches an accuracy above the strong model's.
    assert metrics.cost_at_accuracy([(3.0, 0.9)], 1.01, weak, strong) is None
    assert metrics.cost_saved(None, 11.0) is None


def _tiny(tmp_path: Path) -> Path:
    rows = [
        # id, tokens, weak right?, strong right?
        ("a", 100, 1.0, 1.0),
        ("b", 200, 0.0, 1.0),
        ("c", 300, 1.0, 0.0),
        ("d", 400, 0.0, 0.0),
    ]
    path = tmp_path / "tiny.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps(
                {
                    "id": i,
                    "prompt": f"prompt {i}",
                    "prompt_tokens": t,
                    "completion_tokens": {WEAK: 10, STRONG: 20},
                    "quality": {WEAK: w, STRONG: s},
                }
            )
            + b"\n"
            for i, t, w, s in rows
        )
    )
    return path


def test_baselines_and_report_on_a_hand_computed_dataset(tmp_path: Path) -> None:
    dataset = load_dataset(_tiny(tmp_path))
    assert dataset.strong_and_weak() == (STRONG, WEAK)
    # Strong: 1000 prompt tokens at $10/M + 80 completion tokens at $30/M; weak: 1000 at 0.6 + 40 at 0.6.
    strong_cost, weak_cost = 0.0124, 0.000624
    base = metrics.baselines(dataset, STRONG)
    assert base[STRONG].accuracy == 0.5 and base[STRONG].cost_usd == pytest.approx(strong_cost)
    assert base[WEAK].accuracy == 0.5 and base[WEAK].cost_usd == pytest.approx(weak_cost)
    assert base["random"].cost_usd == pytest.approx((strong_cost + weak_cost) / 2)
    # Oracle: a weak (tie, cheaper), b strong, c weak, d weak (tie).
    assert base["oracle"].accuracy == 0.75
    assert base["oracle"].strong_share == 0.25
    # a, c, d on the weak model: (tokens * 0.6 + 10 * 0.6) / 1e6; b on the strong one: 200 * 10 + 20 * 30.
    assert base["oracle"].cost_usd == pytest.approx((66 + 186 + 246 + 2600) / 1e6)


def test_report_names_the_cheapest_sweep_point_reaching_95_percent(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "d.jsonl", 40)
    dataset = load_dataset(path)
    strong, weak = dataset.strong_and_weak()
    n = len(dataset.prompts)
    all_strong = metrics.outcome(dataset, [strong] * n, strong)
    mixed = metrics.outcome(dataset, [strong] * (n - 1) + [weak], strong)
    sweep = [SweepPoint(5.0, all_strong), SweepPoint(50.0, mixed), SweepPoint(500.0, mixed)]
    report = build_report(dataset, strong, weak, mixed, 50.0, sweep, through="test")
    assert mixed.accuracy >= 0.95 * all_strong.accuracy
    assert report["cost_weight_at_95"] == 50.0  # the first of the two cheapest points
    assert report["cost_saved_at_95"] == pytest.approx(1 - mixed.cost_usd / all_strong.cost_usd)
    for key in ("accuracy", "cost_usd", "strong_share", "cpt50", "cpt80", "apgr", "baselines"):
        assert key in report
    grid = cost_weight_grid(dataset, strong, weak, points=5)
    assert len(grid) == 5 and grid[0] < grid[-1]


def test_refinement_lands_between_the_last_weight_reaching_the_target_and_the_next(tmp_path: Path) -> None:
    dataset = load_dataset(_tiny(tmp_path))
    good, bad = [WEAK, STRONG, WEAK, WEAK], [STRONG] * 4  # accuracy 0.75 and 0.5
    # The last weight reaching 0.7 is 4, the next is 16: one point between, geometrically.
    assert cli._refined(dataset, STRONG, [1.0, 4.0, 16.0], [good, good, bad], 0.7, 1) == pytest.approx([8.0])
    assert cli._refined(dataset, STRONG, [1.0, 4.0, 16.0], [good, good, bad], 0.9, 3) == []  # none reach
    assert cli._refined(dataset, STRONG, [1.0, 4.0], [good, good], 0.7, 3) == []  # nothing above
    assert cli._refined(dataset, STRONG, [1.0, 4.0, 16.0], [good, good, bad], 0.7, 0) == []


def test_the_evaluation_never_reads_subject(tmp_path: Path) -> None:
    real = load_dataset(write_dataset(tmp_path / "real.jsonl", 80))
    garbage = load_dataset(write_dataset(tmp_path / "garbage.jsonl", 80, subject="zz-garbage-zz"))
    assert "subject" not in Prompt.__slots__
    assert replay_in_process(real, 100.0, republish_every=1) == replay_in_process(
        garbage, 100.0, republish_every=1
    )


def test_loader_reads_per_model_completion_tokens_and_rejects_unpriced_models(tmp_path: Path) -> None:
    dataset = load_dataset(_tiny(tmp_path))
    assert dataset.prompts[0].completion_tokens == {WEAK: 10, STRONG: 20}
    unpriced = tmp_path / "unpriced.jsonl"
    unpriced.write_bytes(
        orjson.dumps({"id": "x", "prompt": "p", "prompt_tokens": 1, "quality": {"m1": 1.0, "m2": 0.0}})
    )
    with pytest.raises(ValueError, match="no price"):
        load_dataset(unpriced)
    priced = load_dataset(unpriced, prices=parse_prices(["m1=1/2", "m2=3"]))
    assert priced.prices == {"m1": (1.0, 2.0), "m2": (3.0, 3.0)}


def test_learning_policies_beat_random_and_a_fixed_arm() -> None:
    env = synthetic.Environment("b", "bernoulli", [0.5, 0.65, 0.8], [0.0002, 0.001, 0.003], 20.0, steps=800)
    results = {r.policy: r for r in synthetic.evaluate([env], seeds=(0, 1))}
    for policy in ("thompson", "ucb", "linucb"):
        assert results[policy].vs_oracle < 0.5 * results["random"].vs_oracle, policy
        assert results[policy].vs_oracle < 0.5 * results["fixed"].vs_oracle, policy
    assert results["random"].vs_oracle < results["fixed"].vs_oracle  # the fixed arm is the worst one


def test_learning_policies_recover_when_the_best_arm_degrades() -> None:
    env = synthetic.Environment(
        "d",
        "bernoulli",
        [0.5, 0.6, 0.9],
        [0.001] * 3,
        20.0,
        steps=1200,
        change_at=600,
        means_after=[0.5, 0.6, 0.2],
        decay=0.98,
    )
    runs = {policy: synthetic.run_policy(env, policy, seed=3) for policy in ("thompson", "linucb")}
    for policy, chosen in runs.items():
        # Before the change it found arm 2; in the last quarter it has left it for arm 1.
        assert chosen[400:600].count(2) > 150, policy
        assert chosen[900:].count(2) < 45, policy  # exploration keeps probing it a little
        assert chosen[900:].count(1) > 200, policy
    best_fixed, oracle, _ = synthetic.regret(env, runs["thompson"])
    assert best_fixed < 0 < oracle  # it beats every fixed arm, and loses only while adapting


@pytest.mark.parametrize(
    ("row", "said"),
    [
        (b"not json", ":1: "),
        (b'{"id": "x", "quality": {"a": 1, "b": 0}}', ":1: missing field 'prompt'"),
        (b'{"id": "x", "prompt": "q", "quality": [1, 0]}', "quality must be an object"),
        (b'{"id": "x", "prompt": "q", "quality": {"a": 2, "b": 0}}', "from 0 to 1"),
        (b'{"id": "x", "prompt": 3, "quality": {"a": 1, "b": 0}}', "prompt must be a string"),
        (b'{"id": "x", "prompt": "q", "quality": {"a": 1}}', "at least two models"),
    ],
)
def test_a_row_outside_the_format_is_refused_by_line_and_the_cli_says_so(
    tmp_path: Path, row: bytes, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(row + b"\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: ") as refused:
        load_dataset(path, prices={"a": (1.0, 1.0), "b": (2.0, 2.0)})
    assert said in str(refused.value)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--dataset", str(path), "--offline", "--price", "a=1/1", "--price", "b=2/2"])
    assert str(exited.value.code).startswith("atp-eval: error: ") and said in str(exited.value.code)


def test_prompt_tokens_default_to_the_formats_estimate(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"id": "x", "prompt": "' + b"w" * 40 + b'", "quality": {"a": 0.5, "b": 0.25}}\n')
    dataset = load_dataset(path, prices={"a": (1.0, 1.0), "b": (2.0, 2.0)})
    assert dataset.prompts[0].prompt_tokens == 10 and dataset.prompts[0].quality == {"a": 0.5, "b": 0.25}
