"""`atp-eval ope` (off-policy evaluation from the observer's logs) and `atp-eval split` (held-out groups)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from atp_common.config import AtpConfig, load_config
from atp_common.policy.artifact import ArtifactError, load_artifact
from atp_router.evaluation.logs import outcomes, read_reward_events
from atp_router.evaluation.ope import BOOTSTRAP_SAMPLES, config_target, estimate
from atp_router.evaluation.split import split_by_group


def _ope_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atp-eval ope",
        description=(
            "Estimate from a route's logged decisions (the observer's reward events: features, chosen model, "
            "propensity, outcome) what a candidate policy would have earned: IPS, self-normalised IPS and "
            "doubly robust, with 95%% bootstrap intervals. The candidate is an ATP configuration (its route "
            "--route, or --candidate-route) or a trained artifact (then --config gives the models and the "
            "route whose artifact it replaces)."
        ),
    )
    parser.add_argument("--observer", required=True, help="host:port of the observer")
    parser.add_argument("--route", required=True, help="the logged route")
    parser.add_argument("--candidate", required=True, help="an ATP config (YAML) or an artifact (JSON)")
    parser.add_argument("--config", help="with an artifact candidate: the configuration it deploys into")
    parser.add_argument("--candidate-route", help="the candidate's route (default: --route)")
    parser.add_argument("--value", choices=("reward", "quality"), default="reward")
    parser.add_argument("--samples", type=int, default=BOOTSTRAP_SAMPLES, help="bootstrap resamples")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    return parser


def _candidate_config(args: argparse.Namespace, route: str) -> AtpConfig:
    try:
        artifact = load_artifact(args.candidate)
    except ArtifactError:
        artifact = None
    if artifact is None:
        return load_config(args.candidate)
    if not args.config:
        raise SystemExit("atp-eval ope: an artifact candidate needs --config (the models and the route)")
    config = load_config(args.config)
    data = config.model_dump(mode="json")
    data["routes"][route] = {
        **data["routes"][route],
        "artifact": str(Path(args.candidate).resolve()),
        "policy": "linucb",
    }
    return AtpConfig.model_validate(data)


def run_ope(argv: Sequence[str]) -> tuple[dict[str, object], str]:
    """Read the logs, build the candidate, estimate; returns (report, text)."""
    args = _ope_parser().parse_args(argv)
    route = args.candidate_route or args.route
    target = config_target(_candidate_config(args, route), route)
    events = asyncio.run(read_reward_events(args.observer, args.route, timeout_s=args.timeout))
    report = estimate(outcomes(events), target, value=args.value, samples=args.samples)
    report.update({"route": args.route, "candidate": args.candidate})
    lines = [
        f"route {args.route}: {report['records']} logged decisions, logged mean {args.value} "
        f"{report['logged_mean']:.4f}; candidate {args.candidate}",
        f"effective sample size {report['effective_sample_size']:.0f}, "
        f"share of logged choices the candidate shares {report['matching_share']:.3f}",
    ]
    for name in ("ips", "snips", "doubly_robust"):
        row = report[name]
        assert isinstance(row, dict)
        lines.append(f"{name:14s} {row['value']:.4f}  95% CI [{row['low']:.4f}, {row['high']:.4f}]")
    return report, "\n".join(lines)


def run_split(argv: Sequence[str]) -> tuple[dict[str, object], str]:
    """Split a dataset file into two halves by a field's groups; returns (report, text)."""
    parser = argparse.ArgumentParser(
        prog="atp-eval split",
        description="Write two halves of a dataset, alternating its groups (e.g. subjects) between them.",
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--by", default="subject", help="the grouping field (read by this command only)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    a, b, groups_a, groups_b = split_by_group(args.dataset, args.by, args.out_dir)
    report: dict[str, object] = {"a": str(a), "b": str(b), "groups_a": groups_a, "groups_b": groups_b}
    return report, orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()


COMMANDS: dict[str, Callable[[Sequence[str]], tuple[dict[str, object], str]]] = {
    "ope": run_ope,
    "split": run_split,
}
