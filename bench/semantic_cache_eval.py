"""Semantic cache on a labelled set of question pairs: hit rate on paraphrases, false hits on near-misses."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

from atp_adapters.semantic_cache import SemanticIndex, SemanticQuery, make_query
from atp_common.policy.semantic import EMBEDDING_DIM

DATA = Path(__file__).resolve().parent / "data" / "cache_pairs.jsonl"
THRESHOLDS = (0.80, 0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
BUCKET = 1  # every question in one bucket: same tenant, route, parameters and earlier turns


def load(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _query(text: str, threshold: float, guards: bool) -> SemanticQuery:
    query = make_query(text, BUCKET, threshold)
    assert query is not None, text
    return query if guards else SemanticQuery(query.bucket, query.vector, (), threshold)


def evaluate(pairs: list[dict[str, object]], threshold: float, guards: bool) -> dict[str, object]:
    """Index every pair's first question, then look up every second one: a paraphrase must find its own
    first question, a near-miss must find nothing."""
    index = SemanticIndex(entries=4096, tenants=1)
    for text in {str(p["a"]) for p in pairs}:
        index.add("t", text, _query(text, threshold, guards))
    hits = false_hits = wrong_hits = 0
    by_kind: Counter[str] = Counter()
    for pair in pairs:
        found = index.nearest("t", _query(str(pair["b"]), threshold, guards))
        if pair["same"]:
            hits += found == pair["a"]
            wrong_hits += found is not None and found != pair["a"]
        elif found is not None:
            false_hits += 1
            by_kind[str(pair["kind"])] += 1
    paraphrases = sum(1 for p in pairs if p["same"])
    near = len(pairs) - paraphrases
    return {
        "threshold": threshold,
        "guards": guards,
        "hit_rate": hits / paraphrases,
        "false_hit_rate": (false_hits + wrong_hits) / (near + paraphrases),
        "near_miss_false_hits": false_hits / near,
        "paraphrase_wrong_hits": wrong_hits,
        "false_hits_by_kind": dict(by_kind),
    }


def lookup_cost_us(pairs: list[dict[str, object]], entries: int, rounds: int = 2000) -> dict[str, float]:
    """p50 of making a query (embedding + salient words) and of a lookup in a bucket of `entries`."""
    texts = [str(p["b"]) for p in pairs]
    index = SemanticIndex(entries=entries, tenants=1)
    # The labelled questions, then random unit vectors: a full bucket, each entry distinct.
    rng = np.random.default_rng(7)
    for i in range(entries):
        if i < len(pairs):
            query = _query(str(pairs[i]["a"]), 0.95, True)
        else:
            vector = rng.standard_normal(EMBEDDING_DIM).astype(np.float32)
            query = SemanticQuery(BUCKET, vector / np.linalg.norm(vector), (), 0.95)
        index.add("t", f"k{i}", query)
    make, look = [], []
    for i in range(rounds):
        text = texts[i % len(texts)]
        started = time.perf_counter()
        query = _query(text, 0.95, True)
        middle = time.perf_counter()
        index.nearest("t", query)
        make.append(middle - started)
        look.append(time.perf_counter() - middle)
    return {"query_us": statistics.median(make) * 1e6, "lookup_us": statistics.median(look) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    pairs = load(args.data)
    kinds = Counter(str(p["kind"]) for p in pairs)
    rows = [evaluate(pairs, t, g) for g in (True, False) for t in THRESHOLDS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{len(pairs)} pairs from {args.data.name}: {dict(kinds)}")
    print("threshold  guards  paraphrase hit rate  near-miss false hits  false hits by kind")
    for r in rows:
        print(
            f"{r['threshold']:>9.2f}  {'on' if r['guards'] else 'off':>6}  {r['hit_rate']:>19.1%}  "
            f"{r['near_miss_false_hits']:>20.1%}  {r['false_hits_by_kind'] or ''}"
            + (
                f"  (+{r['paraphrase_wrong_hits']} paraphrases served another's reply)"
                if r["paraphrase_wrong_hits"]
                else ""
            )
        )
    for entries in (256, 2048):
        cost = lookup_cost_us(pairs, entries)
        print(
            f"cost, one core: query (embedding + salient words) p50 {cost['query_us']:.0f} us, "
            f"lookup in a bucket of {entries} p50 {cost['lookup_us']:.0f} us"
        )


if __name__ == "__main__":
    main()
