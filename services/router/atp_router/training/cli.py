"""`atp-train`: fit a router artifact from a labeled data set and/or the observer's logged decisions."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Sequence

import numpy as np
import orjson

from atp_common.policy.artifact import load_artifact
from atp_router.evaluation.dataset import load_dataset, parse_prices
from atp_router.evaluation.logs import LoggedOutcome, outcomes, read_reward_events
from atp_router.evaluation.offline import messages
from atp_router.training.fit import DEFAULT_SEMANTIC_DIM, Example, fit_vectors, train

# Importance weights above this are clipped: one rare choice must not dominate a model's fit.
MAX_IMPORTANCE_WEIGHT = 50.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atp-train",
        description=(
            "Fit a router artifact (feature spec, projection, per-model calibrated ridge weights, training "
            "data digest) that a route names with `artifact: PATH`. From a labeled data set (--dataset: "
            "per-model quality per prompt) or from the observer's logged decisions of a route (--observer "
            "and --route: each outcome weighted by 1 / its logged propensity)."
        ),
    )
    parser.add_argument("--dataset", help="jsonl file in the mmlu_dev.jsonl format")
    parser.add_argument("--price", action="append", default=[], metavar="MODEL=IN/OUT")
    parser.add_argument("--observer", help="host:port of the observer whose logs to learn from")
    parser.add_argument("--route", help="the route whose logged decisions to learn from (with --observer)")
    parser.add_argument(
        "--projection-from",
        help="logs: an artifact whose projection the route used (its semantic features are in the logs)",
    )
    parser.add_argument(
        "--semantic-dim", type=int, default=DEFAULT_SEMANTIC_DIM, help="0: base features only"
    )
    parser.add_argument("--out", required=True, help="artifact file to write")
    parser.add_argument("--timeout", type=float, default=30.0)
    return parser


def _from_logs(
    logged: Sequence[LoggedOutcome], projection_from: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], tuple[np.ndarray, np.ndarray]]:
    if projection_from:
        artifact = load_artifact(projection_from)
        k = artifact.semantic_dim
        matrix = np.asarray(artifact.projection, dtype=np.float32).reshape(k, 256)
        offset = np.asarray(artifact.offset, dtype=np.float32)
        dim = artifact.dim
    else:
        matrix, offset = np.zeros((0, 256), dtype=np.float32), np.zeros(0, dtype=np.float32)
        dim = len(logged[0].features) if logged else 0
        dim = min(dim, 13)
    rows = [o for o in logged if len(o.features) >= dim]
    if not rows:
        raise ValueError(f"no logged decision carries a {dim}-entry feature vector")
    models = sorted({o.model for o in rows})
    x = np.array([o.features[:dim] for o in rows], dtype=np.float64)
    quality = np.zeros((len(rows), len(models)))
    weight = np.zeros((len(rows), len(models)))
    for i, o in enumerate(rows):
        column = models.index(o.model)
        quality[i, column] = o.quality
        weight[i, column] = min(1.0 / o.propensity, MAX_IMPORTANCE_WEIGHT)
    return x, quality, weight, models, (matrix, offset)


def run(argv: Sequence[str]) -> dict[str, object]:
    """Parse arguments, fit, write the artifact; returns a summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.dataset and not args.observer:
        parser.error("give --dataset, or --observer with --route")
    if args.observer and not args.route:
        parser.error("--observer needs --route")
    if args.dataset:
        dataset = load_dataset(args.dataset, prices=parse_prices(args.price))
        examples = [
            Example(messages(p), p.quality, dict.fromkeys(dataset.models, 1.0)) for p in dataset.prompts
        ]
        artifact = train(
            examples, dataset.models, semantic_dim=args.semantic_dim, source=f"dataset {args.dataset}"
        )
    else:
        events = asyncio.run(read_reward_events(args.observer, args.route, timeout_s=args.timeout))
        logged = outcomes(events)
        x, quality, weight, models, projection = _from_logs(logged, args.projection_from)
        digest = orjson.dumps([[o.features, o.model, o.propensity, o.quality] for o in logged])
        training = {
            "digest": "sha256:" + hashlib.sha256(digest).hexdigest(),
            "rows": len(x),
            "source": f"observer {args.observer} route {args.route} (importance-weighted)",
        }
        artifact = fit_vectors(x, quality, weight, models, projection, training)
    path = artifact.save(args.out)
    return {
        "artifact": str(path),
        "artifact_digest": artifact.digest(),
        "models": sorted(artifact.models),
        **artifact.training,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: a bad input file or argument is one error line, not a traceback."""
    try:
        summary = run(list(sys.argv[1:] if argv is None else argv))
    except (OSError, ValueError) as exc:
        sys.exit(f"atp-train: error: {exc}")
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
