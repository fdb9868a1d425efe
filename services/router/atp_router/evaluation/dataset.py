"""Routing datasets (the RouteLLM-derived jsonl format): prompts, token counts, per-model quality, prices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

# List prices (USD per million input / output tokens) when the MMLU data was made (its README).
KNOWN_PRICES: Mapping[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "mixtral-8x7b-instruct": (0.60, 0.60),
}


@dataclass(frozen=True, slots=True)
class Prompt:
    """One dataset row as the evaluation may see it. There is deliberately no `subject` field: a real
    request does not carry one, so the loader drops it and nothing downstream can read it."""

    id: str
    text: str
    prompt_tokens: int
    completion_tokens: Mapping[str, int]
    quality: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Dataset:
    """Prompts in file order, the models they were graded on, and each model's price."""

    prompts: Sequence[Prompt]
    models: tuple[str, ...]
    prices: Mapping[str, tuple[float, float]]

    def cost(self, prompt: Prompt, model: str) -> float:
        """USD of answering `prompt` with `model` at list price."""
        input_price, output_price = self.prices[model]
        return (prompt.prompt_tokens * input_price + prompt.completion_tokens[model] * output_price) / 1e6

    def strong_and_weak(self) -> tuple[str, str]:
        """(strong, weak): the model with the higher mean quality is the strong one (ties: the dearer)."""
        n = len(self.prompts)

        def key(model: str) -> tuple[float, float]:
            mean = sum(p.quality[model] for p in self.prompts) / n
            return mean, sum(self.cost(p, model) for p in self.prompts)

        ranked = sorted(self.models, key=key, reverse=True)
        return ranked[0], ranked[-1]


def parse_prices(specs: Sequence[str]) -> dict[str, tuple[float, float]]:
    """`MODEL=IN/OUT` (USD per million tokens) flags into a price table."""
    prices: dict[str, tuple[float, float]] = {}
    for spec in specs:
        model, _, pair = spec.partition("=")
        inp, _, out = pair.partition("/")
        try:
            prices[model.strip()] = (float(inp), float(out or inp))
        except ValueError:
            raise ValueError(f"bad price {spec!r}; expected MODEL=IN/OUT in USD per million tokens") from None
    return prices


def load_dataset(
    path: str | Path,
    *,
    prices: Mapping[str, tuple[float, float]] | None = None,
    limit: int | None = None,
) -> Dataset:
    """Read a jsonl file of the mmlu_dev format; `prices` adds to or overrides KNOWN_PRICES. A row that
    does not fit the format is a ValueError naming its line."""
    table = {**KNOWN_PRICES, **(prices or {})}
    prompts: list[Prompt] = []
    models: tuple[str, ...] | None = None
    with Path(path).open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                prompt = _prompt(orjson.loads(line), models)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                raise ValueError(f"{path}:{number}: {what}") from None
            if models is None:
                models = tuple(sorted(prompt.quality))
                missing = [m for m in models if m not in table]
                if missing:
                    raise ValueError(f"no price for {missing}; pass --price MODEL=IN/OUT")
            prompts.append(prompt)
            if limit is not None and len(prompts) >= limit:
                break
    if models is None:
        raise ValueError(f"{path}: no rows")
    return Dataset(prompts, models, {m: table[m] for m in models})


def _prompt(row: dict[str, object], models: tuple[str, ...] | None) -> Prompt:
    """One row; `models` are the first row's (None for the first row itself)."""
    raw_quality = row["quality"]
    if not isinstance(raw_quality, dict):
        raise ValueError("quality must be an object of model: score")
    quality = {str(m): float(q) for m, q in raw_quality.items()}
    if any(not 0.0 <= q <= 1.0 for q in quality.values()):
        raise ValueError("quality scores must be numbers from 0 to 1")
    if models is None and len(quality) < 2:
        raise ValueError("need quality for at least two models")
    if models is not None and set(quality) != set(models):
        raise ValueError(f"quality for {sorted(quality)}, expected {list(models)}")
    text = row["prompt"]
    if not isinstance(text, str):
        raise ValueError("prompt must be a string")
    completion = row.get("completion_tokens", 1)
    if isinstance(completion, dict):
        completions = {m: int(completion[m]) for m in quality}
    else:
        completions = {m: int(completion) for m in quality}  # type: ignore[call-overload]
    # The format's estimate when a file leaves it out: characters / 4.
    prompt_tokens = row.get("prompt_tokens", len(text) // 4)
    return Prompt(
        id=str(row["id"]),
        text=text,
        prompt_tokens=int(prompt_tokens),  # type: ignore[call-overload]
        completion_tokens=completions,
        quality=quality,
    )
