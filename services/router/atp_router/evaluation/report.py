"""The evaluation report: RouteLLM's metrics over a cost-weight sweep, text and JSON forms, and the plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atp_router.evaluation import metrics
from atp_router.evaluation.dataset import Dataset
from atp_router.evaluation.metrics import Outcome

TARGET_SHARE_OF_STRONG = 0.95


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One online pass at one cost weight."""

    cost_weight: float
    outcome: Outcome


# The floor knob's default sweep: fractions of the best candidate's predicted quality, denser near 1,
# where the strong share changes fastest.
QUALITY_FLOOR_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.83, 0.86, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 1.0)


def cost_weight_grid(dataset: Dataset, strong: str, weak: str, points: int = 24) -> list[float]:
    """Cost weights around the break-even one, where the strong model's mean quality edge equals the
    weighted mean extra cost: from a fifth to five times it, geometrically spaced."""
    n = len(dataset.prompts)
    edge = sum(p.quality[strong] - p.quality[weak] for p in dataset.prompts) / n
    extra = sum(dataset.cost(p, strong) - dataset.cost(p, weak) for p in dataset.prompts) / n
    if edge <= 0 or extra <= 0:
        raise ValueError("the strong model must be both better and dearer on this dataset")
    pivot = edge / extra
    low, high = pivot / 5.0, pivot * 5.0
    return [low * (high / low) ** (i / (points - 1)) for i in range(points)]


def build_report(
    dataset: Dataset,
    strong: str,
    weak: str,
    main: Outcome,
    main_cost_weight: float | None,
    sweep: Sequence[SweepPoint],
    *,
    through: str,
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The report as one JSON-ready dict (see the cli's --json)."""
    base = metrics.baselines(dataset, strong)
    strong_acc, weak_acc = base[strong].accuracy, base[weak].accuracy
    strong_cost, weak_cost = base[strong].cost_usd, base[weak].cost_usd
    target = TARGET_SHARE_OF_STRONG * strong_acc
    share_points = [(p.outcome.strong_share, p.outcome.accuracy) for p in sweep]
    cost_points = [(p.outcome.cost_usd, p.outcome.accuracy) for p in sweep]
    reaching = [p for p in sweep if p.outcome.accuracy >= target]
    best = min(reaching, key=lambda p: p.outcome.cost_usd) if reaching else None
    interpolated = metrics.cost_at_accuracy(
        cost_points, target, (weak_cost, weak_acc), (strong_cost, strong_acc)
    )
    target_pgr = metrics.pgr(target, weak_acc, strong_acc)
    calls = metrics.cpt(share_points, weak_acc, strong_acc, target_pgr) if target_pgr <= 1 else 1.0
    return {
        "through": through,
        "prompts": len(dataset.prompts),
        "strong_model": strong,
        "weak_model": weak,
        "cost_weight": main_cost_weight,
        **main.as_dict(),
        "target_accuracy": target,
        "cost_saved_at_95": metrics.cost_saved(best.outcome.cost_usd, strong_cost) if best else None,
        "cost_weight_at_95": best.cost_weight if best else None,
        "cost_saved_at_95_interpolated": metrics.cost_saved(interpolated, strong_cost),
        "calls_saved_at_95": 1.0 - calls,
        "cpt50": metrics.cpt(share_points, weak_acc, strong_acc, 0.5),
        "cpt80": metrics.cpt(share_points, weak_acc, strong_acc, 0.8),
        "apgr": metrics.apgr(share_points, weak_acc, strong_acc),
        "baselines": {name: outcome.as_dict() for name, outcome in base.items()},
        "sweep": [{"cost_weight": p.cost_weight, **p.outcome.as_dict()} for p in sweep],
        **(extra or {}),
    }


def _pct(value: object) -> str:
    return "n/a" if value is None else f"{float(value) * 100:.1f}%"  # type: ignore[arg-type]


def render_text(report: Mapping[str, object]) -> str:
    """A human-readable summary of a report."""
    baselines: Mapping[str, Mapping[str, float]] = report["baselines"]  # type: ignore[assignment]
    weight = report["cost_weight"]
    knob = str(report.get("knob", "cost_weight")).replace("_", " ")
    shown = "of the route's own configuration" if weight is None else f"{weight:.4g}"
    lines = [
        f"{report['prompts']} prompts through {report['through']}, {knob} {shown}:",
        f"  accuracy {report['accuracy']:.4f}  cost ${report['cost_usd']:.4f}  "
        f"strong share {_pct(report['strong_share'])}",
        "baselines:",
    ]
    for name, row in baselines.items():
        lines.append(
            f"  {name:28s} accuracy {row['accuracy']:.4f}  cost ${row['cost_usd']:.4f}  "
            f"strong share {_pct(row['strong_share'])}"
        )
    lines.append(f"sweep (in-process kernel, online from zero at each {knob}):")
    for row in report["sweep"]:  # type: ignore[attr-defined]
        lines.append(
            f"  w={row['cost_weight']:9.4g}  accuracy {row['accuracy']:.4f}  cost ${row['cost_usd']:.4f}  "
            f"strong share {_pct(row['strong_share'])}"
        )
    lines += [
        f"target (95% of {report['strong_model']}): accuracy {report['target_accuracy']:.4f}",
        f"  cost saved at 95%: {_pct(report['cost_saved_at_95'])} ({knob} "
        f"{report['cost_weight_at_95']}), interpolated {_pct(report['cost_saved_at_95_interpolated'])}, "
        f"strong calls saved {_pct(report['calls_saved_at_95'])}",
        f"  CPT(50%) {_pct(report['cpt50'])}  CPT(80%) {_pct(report['cpt80'])}  APGR {report['apgr']:.3f}",
    ]
    if "timings_s" in report:
        lines.append(f"timings (s): {report['timings_s']}")
    return "\n".join(lines)


def plot(report: Mapping[str, object], path: str | Path) -> Path:
    """The cost-quality curve (sweep, single models, random, oracle, the services' pass) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    from matplotlib import pyplot

    baselines: Mapping[str, Mapping[str, float]] = report["baselines"]  # type: ignore[assignment]
    sweep: Sequence[Mapping[str, float]] = report["sweep"]  # type: ignore[assignment]
    strong, weak = str(report["strong_model"]), str(report["weak_model"])
    figure, (axes, share_axes) = pyplot.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    try:
        curve = sorted(
            [(baselines[weak]["cost_usd"], baselines[weak]["accuracy"])]
            + [(row["cost_usd"], row["accuracy"]) for row in sweep]
            + [(baselines[strong]["cost_usd"], baselines[strong]["accuracy"])]
        )
        knob = str(report.get("knob", "cost_weight"))
        axes.plot(*zip(*curve, strict=True), "o-", color="tab:blue", label=f"ATP LinUCB, {knob} sweep")
        ends = [baselines[weak], baselines[strong]]
        axes.plot(
            [row["cost_usd"] for row in ends],
            [row["accuracy"] for row in ends],
            ":",
            color="tab:green",
            linewidth=1,
            label="random mix of the two",
        )
        for name, marker in ((strong, "s"), (weak, "s"), ("random", "x"), ("oracle", "*")):
            row = baselines[name]
            axes.plot(row["cost_usd"], row["accuracy"], marker, markersize=9, label=name)
        axes.plot(
            float(report["cost_usd"]),  # type: ignore[arg-type]
            float(report["accuracy"]),  # type: ignore[arg-type]
            "D",
            color="tab:red",
            markersize=8,
            label=f"through {report['through']}"
            + ("" if report["cost_weight"] is None else f" ({knob} {report['cost_weight']:.3g})"),
        )
        axes.axhline(
            float(report["target_accuracy"]),  # type: ignore[arg-type]
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"95% of {strong}",
        )
        axes.set_xlabel("cost (USD)")
        axes.set_ylabel("accuracy")
        axes.set_title(f"{report['prompts']} prompts: cost vs quality")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="lower right")
        _share_panel(share_axes, report)
        figure.tight_layout()
        out = Path(path)
        figure.savefig(out)
    finally:
        pyplot.close(figure)
    return out


def _share_panel(axes: Any, report: Mapping[str, object]) -> None:
    """RouteLLM's axis: accuracy against the share of calls sent to the strong model."""
    baselines: Mapping[str, Mapping[str, float]] = report["baselines"]  # type: ignore[assignment]
    sweep: Sequence[Mapping[str, float]] = report["sweep"]  # type: ignore[assignment]
    strong, weak = str(report["strong_model"]), str(report["weak_model"])
    curve = sorted(
        [(0.0, baselines[weak]["accuracy"])]
        + [(row["strong_share"], row["accuracy"]) for row in sweep]
        + [(1.0, baselines[strong]["accuracy"])]
    )
    axes.plot(*zip(*curve, strict=True), "o-", color="tab:blue", label="ATP, sweep")
    axes.plot(
        [0, 1],
        [baselines[weak]["accuracy"], baselines[strong]["accuracy"]],
        ":",
        color="tab:green",
        label="random",
    )
    oracle = baselines["oracle"]
    axes.plot(oracle["strong_share"], oracle["accuracy"], "*", markersize=9, label="oracle")
    axes.axhline(float(report["target_accuracy"]), color="grey", linestyle="--", linewidth=1)  # type: ignore[arg-type]
    axes.set_xlabel(f"share of calls to {strong}")
    axes.set_ylabel("accuracy")
    apgr, saved = float(report["apgr"]), float(report["calls_saved_at_95"])  # type: ignore[arg-type]
    axes.set_title(f"calls: APGR {apgr:.3f}, saved at 95% {saved * 100:.1f}%")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
