"""`atp-eval`: replay a dataset through the running router and observer (or `atp-eval synthetic`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence

import orjson

from atp_router.evaluation import commands, metrics, synthetic
from atp_router.evaluation.dataset import Dataset, load_dataset, parse_prices
from atp_router.evaluation.offline import (
    DEFAULT_EXPLORATION,
    ROUTE,
    RouteOptions,
    eval_config,
    sweep_in_process,
)
from atp_router.evaluation.replay import replay_over_grpc
from atp_router.evaluation.report import (
    QUALITY_FLOOR_GRID,
    SweepPoint,
    build_report,
    cost_weight_grid,
    plot,
    render_text,
)
from atp_router.evaluation.spawn import spawn_services

# The router publishes at most one snapshot per interval (1 s by default). A replay waits for the router
# to publish what it learned (--sync-every), so --spawn lowers the interval to keep those waits short.
DEFAULT_SNAPSHOT_INTERVAL_S = 0.005


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _replay_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atp-eval",
        description=(
            "Replay a dataset of prompts with per-model quality through ATP's router and observer over gRPC "
            "(online learning, as in production), sweep the cost weight with the same kernel in-process, and "
            "report accuracy, cost, baselines and RouteLLM's metrics. `atp-eval synthetic --help` for the "
            "synthetic bandit environments."
        ),
    )
    parser.add_argument("--dataset", required=True, help="jsonl file in the mmlu_dev.jsonl format")
    parser.add_argument("--limit", type=int, help="replay only the first N prompts")
    parser.add_argument(
        "--price", action="append", default=[], metavar="MODEL=IN/OUT", help="USD per million tokens"
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--spawn", action="store_true", help="start an observer and a router (ephemeral ports) for the run"
    )
    target.add_argument("--router", help="host:port of a running router (with --observer)")
    target.add_argument(
        "--offline", action="store_true", help="no services: the main pass runs in-process too"
    )
    parser.add_argument("--observer", help="host:port of the observer the router learns from")
    _add_pass_arguments(parser)
    _add_route_arguments(parser)
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each gRPC call (s)")
    parser.add_argument("--plot", default="atp-eval.png", help="PNG of the cost-quality curve ('' for none)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def _add_pass_arguments(parser: argparse.ArgumentParser) -> None:
    """The route asked for, the cost weights swept, and how the passes publish and sync what they learn."""
    parser.add_argument(
        "--route",
        default=ROUTE,
        help=(
            f"route to ask for (running services, whose route must have the dataset's models as candidates "
            f"and sets its own cost weight; --spawn uses {ROUTE!r})"
        ),
    )
    parser.add_argument(
        "--cost-weight",
        type=float,
        help="cost weight of the gRPC pass (--spawn); default: the sweep's cheapest one reaching 95%%",
    )
    parser.add_argument(
        "--cost-weights",
        type=_floats,
        help="comma-separated sweep; default: 24 around break-even (the floor knob: 0.5 to 1.0)",
    )
    parser.add_argument(
        "--exploration", type=float, default=DEFAULT_EXPLORATION, help="LinUCB exploration (alpha)"
    )
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=DEFAULT_SNAPSHOT_INTERVAL_S,
        help="router's snapshot_min_interval_s under --spawn (production default 1.0)",
    )
    parser.add_argument(
        "--sync-every",
        type=int,
        default=1,
        help=(
            "gRPC pass: after every N prompts wait until the router has published all it learned (the policy "
            "then moves exactly every N requests, reproducibly); 0: never wait, as in production"
        ),
    )
    parser.add_argument(
        "--republish-every",
        type=int,
        help="in-process sweep: decisions per snapshot (default: --sync-every, or 10 when that is 0)",
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=8,
        help="extra sweep points between the largest cost weight reaching 95%% and the next one (0: none)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for the in-process sweep")


def _add_route_arguments(parser: argparse.ArgumentParser) -> None:
    """How the replayed route is built: its starting artifact, features, floor and the requests' size."""
    parser.add_argument("--artifact", help="a trained router (atp-train) the route starts from")
    parser.add_argument(
        "--semantic", action="store_true", help="semantic features with the shipped projection (no artifact)"
    )
    parser.add_argument("--prior-rows", type=float, default=200.0, help="observations the artifact weighs")
    parser.add_argument("--epsilon", type=float, default=0.0, help="epsilon-mixing of the route's LinUCB")
    parser.add_argument(
        "--quality-floor",
        type=float,
        default=0.0,
        help="known-cost routes: cheapest candidate within this fraction of the best predicted quality",
    )
    parser.add_argument(
        "--knob",
        choices=("cost_weight", "quality_floor"),
        default="cost_weight",
        help="what --cost-weights sweeps: the cost weight, or the quality floor at cost weight 0",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        help="max_tokens every replayed request declares (its known price counts it)",
    )


def _synthetic_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atp-eval synthetic",
        description=(
            "Seeded bandit environments (Bernoulli, Gaussian, several arms, a model that degrades mid-run, a "
            "price change) through the policy kernel and learner; cumulative expected regret against the "
            "best fixed arm in hindsight and against the per-step oracle, mean over seeds."
        ),
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument(
        "--refine",
        type=int,
        default=8,
        help="extra sweep points between the largest cost weight reaching 95%% and the next one (0: none)",
    )
    parser.add_argument("--exploration", type=float, default=0.5)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return parser


def _progress(label: str, total: int) -> Callable[[int], None]:
    step = max(total // 10, 1)

    def report(done: int) -> None:
        if done % step == 0 or done == total:
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)

    return report


async def _services_pass(args: argparse.Namespace, dataset: Dataset, cost_weight: float) -> list[str]:
    progress = _progress("gRPC replay", len(dataset.prompts))
    if args.spawn:
        weight, options = args.options.at(cost_weight)
        config = eval_config(dataset, cost_weight=weight, options=options)
        async with spawn_services(config, snapshot_interval_s=args.snapshot_interval) as services:
            return await replay_over_grpc(
                dataset,
                services.router_addr,
                services.observer_addr,
                timeout_s=args.timeout,
                sync_every=args.sync_every,
                progress=progress,
                params=args.options.params(),
            )
    return await replay_over_grpc(
        dataset,
        args.router,
        args.observer,
        timeout_s=args.timeout,
        route=args.route,
        sync_every=args.sync_every,
        progress=progress,
        params=args.options.params(),
    )


def _refined(
    dataset: Dataset,
    strong: str,
    weights: Sequence[float],
    choices: Sequence[Sequence[str]],
    target: float,
    points: int,
) -> list[float]:
    """Cost weights between the largest one whose pass reaches `target` and the next larger one: the
    quality falls steeply there, so a coarse grid misses the cheapest weight that still reaches it."""
    if points <= 0:
        return []
    reaching = [
        w
        for w, c in zip(weights, choices, strict=True)
        if metrics.outcome(dataset, c, strong).accuracy >= target
    ]
    if not reaching:
        return []
    low = max(reaching)
    above = [w for w in weights if w > low]
    if not above:
        return []
    high = min(above)
    return [low * (high / low) ** ((i + 1) / (points + 1)) for i in range(points)]


def _replay_args(argv: Sequence[str]) -> argparse.Namespace:
    """The replay's arguments, checked, with the route options they describe as `args.options`."""
    parser = _replay_parser()
    args = parser.parse_args(argv)
    if args.router and not args.observer:
        parser.error("--router needs --observer")
    if args.republish_every is None:
        args.republish_every = args.sync_every or 10
    args.options = RouteOptions(
        exploration=args.exploration,
        artifact=args.artifact,
        semantic=args.semantic,
        quality_floor=args.quality_floor,
        epsilon=args.epsilon,
        prior_rows=args.prior_rows,
        max_tokens=args.max_tokens,
        knob=args.knob,
    )
    if not 0.0 <= args.quality_floor <= 1.0:
        parser.error("--quality-floor is a fraction of the best predicted quality, from 0 to 1")
    if args.knob == "quality_floor" and any(not 0.0 <= v <= 1.0 for v in args.cost_weights or ()):
        parser.error("--knob quality_floor sweeps fractions from 0 to 1 (--cost-weights)")
    if args.knob == "quality_floor":
        args.refine = 0  # the refinement brackets a falling cost weight; floors rise toward quality
    return args


def _sweep(
    args: argparse.Namespace, dataset: Dataset, strong: str, weak: str, target: float
) -> tuple[list[float], list[list[str]]]:
    """The in-process sweep over the cost weights (refined where `target` accuracy is lost), in order of
    cost weight: the weights and each one's choices."""
    if args.cost_weights:
        weights = args.cost_weights
    elif args.knob == "quality_floor":
        weights = list(QUALITY_FLOOR_GRID)
    else:
        weights = cost_weight_grid(dataset, strong, weak)
    print(f"sweep: {len(weights)} cost weights, {args.workers} processes", file=sys.stderr, flush=True)
    sweep_choices = _sweep_pass(args, dataset, weights)
    finer = _refined(dataset, strong, weights, sweep_choices, target, args.refine)
    if finer:
        print(f"refining: {len(finer)} more cost weights", file=sys.stderr, flush=True)
        weights = [*weights, *finer]
        sweep_choices += _sweep_pass(args, dataset, finer)
    ordered = sorted(zip(weights, sweep_choices, strict=True), key=lambda pair: pair[0])
    return [w for w, _ in ordered], [c for _, c in ordered]


def _sweep_pass(args: argparse.Namespace, dataset: Dataset, weights: Sequence[float]) -> list[list[str]]:
    return sweep_in_process(
        dataset,
        weights,
        exploration=args.exploration,
        republish_every=args.republish_every,
        workers=args.workers,
        options=args.options,
    )


def _main_pass(args: argparse.Namespace, dataset: Dataset, cost_weight: float) -> tuple[list[str], str]:
    """The main pass at `cost_weight`: its choices, and what made them."""
    if args.offline:
        choices = sweep_in_process(
            dataset,
            [cost_weight],
            exploration=args.exploration,
            republish_every=args.republish_every,
            options=args.options,
        )[0]
        return choices, "in-process kernel"
    return asyncio.run(_services_pass(args, dataset, cost_weight)), "router+observer over gRPC"


def _extra(args: argparse.Namespace, timings_s: dict[str, float]) -> dict[str, object]:
    """The report's record of how the run was made."""
    extra: dict[str, object] = {
        "exploration": args.exploration,
        "route_options": {k: v for k, v in args.options.route_fields().items() if k != "policy"},
        "knob": args.knob,
        "timings_s": timings_s,
    }
    extra["republish_every"] = args.republish_every
    if not args.offline:
        extra["sync_every"] = args.sync_every
    if args.spawn:
        extra["snapshot_interval_s"] = args.snapshot_interval
    return extra


def run_replay(argv: Sequence[str]) -> dict[str, object]:
    """Parse replay arguments, run the sweep and the main pass, and return the report."""
    args = _replay_args(argv)
    started = time.monotonic()
    dataset = load_dataset(args.dataset, prices=parse_prices(args.price), limit=args.limit)
    strong, weak = dataset.strong_and_weak()
    strong_acc = metrics.outcome(dataset, [strong] * len(dataset.prompts), strong).accuracy
    weights, sweep_choices = _sweep(args, dataset, strong, weak, 0.95 * strong_acc)
    sweep = [
        SweepPoint(w, metrics.outcome(dataset, choices, strong))
        for w, choices in zip(weights, sweep_choices, strict=True)
    ]
    sweep_s = time.monotonic() - started

    reaching = [p for p in sweep if p.outcome.accuracy >= 0.95 * strong_acc]
    cost_weight = args.cost_weight
    if cost_weight is None:
        cost_weight = min(reaching, key=lambda p: p.outcome.cost_usd).cost_weight if reaching else weights[0]
    main_started = time.monotonic()
    choices, through = _main_pass(args, dataset, cost_weight)
    main_s = time.monotonic() - main_started
    timings_s = {
        "sweep": round(sweep_s, 1),
        "main_pass": round(main_s, 1),
        "total": round(time.monotonic() - started, 1),
    }
    extra = _extra(args, timings_s)
    same_weight = [c for w, c in zip(weights, sweep_choices, strict=True) if w == cost_weight]
    if same_weight and not args.router:
        # The services and the in-process kernel, same cost weight: how many decisions agree.
        extra["decisions_matching_sweep"] = sum(a == b for a, b in zip(choices, same_weight[0], strict=True))
    if args.router:
        extra["route"] = args.route
    report = build_report(
        dataset,
        strong,
        weak,
        metrics.outcome(dataset, choices, strong),
        None if args.router else cost_weight,
        sweep,
        through=through,
        extra=extra,
    )
    if args.plot:
        report["plot"] = str(plot(report, args.plot))
    return report


def run_synthetic(argv: Sequence[str]) -> dict[str, object]:
    """Parse synthetic arguments and return regret per environment and policy."""
    args = _synthetic_parser().parse_args(argv)
    envs = synthetic.environments(args.steps)
    results = synthetic.evaluate(envs, seeds=args.seeds, exploration=args.exploration)
    return {
        "steps": args.steps,
        "seeds": args.seeds,
        "environments": [
            {"name": e.name, "kind": e.kind, "arms": len(e.means), "change_at": e.change_at, "decay": e.decay}
            for e in envs
        ],
        "results": [r.as_dict() for r in results],
    }


def _synthetic_text(report: dict[str, object]) -> str:
    lines = [f"{'environment':14s} {'policy':9s} {'regret vs best fixed':>21s} {'vs oracle':>10s}"]
    for row in report["results"]:  # type: ignore[attr-defined]
        lines.append(
            f"{row['environment']:14s} {row['policy']:9s} {row['regret_vs_best_fixed']:21.1f} "
            f"{row['regret_vs_oracle']:10.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: a bad input file or argument is one error line, not a traceback."""
    try:
        _main(list(sys.argv[1:] if argv is None else argv))
    except (OSError, ValueError) as exc:
        sys.exit(f"atp-eval: error: {exc}")


def _main(argv: list[str]) -> None:
    if argv and argv[0] in commands.COMMANDS:
        report, text = commands.COMMANDS[argv[0]](argv[1:])
    elif argv and argv[0] == "synthetic":
        report = run_synthetic(argv[1:])
        text = _synthetic_text(report)
    else:
        if argv and argv[0] == "replay":
            argv = argv[1:]
        report = run_replay(argv)
        text = render_text(report)
    if "--json" in argv:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
