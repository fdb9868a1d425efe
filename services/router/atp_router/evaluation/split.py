"""Split a dataset file into two halves by a grouping field (held-out groups for train/replay evaluation).

Only the harness reads the grouping field, to decide which file a row goes to; the rows are copied
verbatim and the router never sees the field (the dataset loader drops it).
"""

from __future__ import annotations

from pathlib import Path

import orjson


def split_by_group(
    path: str | Path, field: str, out_dir: str | Path
) -> tuple[Path, Path, list[str], list[str]]:
    """Write `<stem>.a.jsonl` and `<stem>.b.jsonl`: the groups in sorted order alternate between them."""
    source = Path(path)
    rows = [line for line in source.read_bytes().splitlines() if line.strip()]
    groups = sorted({str(orjson.loads(line).get(field, "")) for line in rows})
    first = set(groups[0::2])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a, b = out / f"{source.stem}.a.jsonl", out / f"{source.stem}.b.jsonl"
    with a.open("wb") as file_a, b.open("wb") as file_b:
        for line in rows:
            target = file_a if str(orjson.loads(line).get(field, "")) in first else file_b
            target.write(line + b"\n")
    return a, b, sorted(first), [g for g in groups if g not in first]
