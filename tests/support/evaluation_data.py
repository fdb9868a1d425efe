"""Small datasets in the mmlu_dev.jsonl format for the evaluation tests."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

STRONG, WEAK = "gpt-4-1106-preview", "mixtral-8x7b-instruct"
_TOPICS = ("algebra", "law", "biology", "history", "physics")


def write_dataset(path: Path, n: int = 60, *, seed: int = 7, subject: str | None = None) -> Path:
    """n rows: the strong model is right more often, above all on long prompts; `subject` overrides every
    row's subject (garbage for the never-reads-subject test)."""
    rng = random.Random(seed)
    with path.open("wb") as out:
        for i in range(n):
            topic = _TOPICS[i % len(_TOPICS)]
            words = rng.randint(5, 120)
            text = f"Question {i} on {topic}: " + " ".join(rng.choice(_TOPICS) for _ in range(words))
            text += "\nA. one\nB. two\nC. three\nD. four\nAnswer:"
            long = words > 60
            strong = 1.0 if rng.random() < (0.95 if long else 0.8) else 0.0
            weak = 1.0 if rng.random() < (0.4 if long else 0.75) else 0.0
            row = {
                "id": f"test/{topic}/{i}",
                "task": "test",
                "subject": subject if subject is not None else topic,
                "prompt": text,
                "prompt_tokens": len(text) // 4,
                "completion_tokens": 1,
                "quality": {WEAK: weak, STRONG: strong},
            }
            out.write(orjson.dumps(row) + b"\n")
    return path
