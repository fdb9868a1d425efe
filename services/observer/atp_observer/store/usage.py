"""Usage queries as both backends build them: the grouping columns, the statement's shape, its rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument

GROUP_COLUMNS = ("tenant", "route", "model")


def check_group_by(group_by: Iterable[str]) -> tuple[str, ...]:
    """The grouping columns in canonical order; unknown names are refused."""
    wanted = set(group_by)
    unknown = wanted.difference(GROUP_COLUMNS)
    if unknown:
        raise InvalidArgument(f"cannot group usage by {sorted(unknown)}", param="group_by")
    return tuple(column for column in GROUP_COLUMNS if column in wanted)


def usage_query(
    aggregates: Sequence[str], groups: Sequence[str], where: Sequence[str], bucket: str = ""
) -> str:
    """The usage query: `aggregates` per group over the observations matching `where`, groups in order,
    first by the time bucket that the SQL expression `bucket` computes (in Unix seconds) when given.
    Each backend supplies its own dialect for the aggregates and placeholders; the shape is shared."""
    keys = [f"{bucket} AS bucket", *groups] if bucket else list(groups)
    names = ["bucket", *groups] if bucket else list(groups)
    sql = f"SELECT {', '.join([*keys, *aggregates])} FROM observations"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if names:
        sql += f" GROUP BY {', '.join(names)}"
    sql += " HAVING count(*) > 0"
    if names:
        sql += f" ORDER BY {', '.join(names)}"
    return sql


def usage_row(groups: tuple[str, ...], row: Sequence[Any]) -> observer_pb2.UsageRow:
    """A UsageRow from `*groups, requests, errors, prompt, completion, cost, mean latency`; a group named
    `bucket` holds the start of the row's time bucket in Unix seconds."""
    labels = dict(zip(groups, row, strict=False))
    n = len(groups)
    usage = observer_pb2.UsageRow(
        tenant=labels.get("tenant", ""),
        route=labels.get("route", ""),
        model=labels.get("model", ""),
        requests=row[n],
        errors=row[n + 1],
        prompt_tokens=row[n + 2],
        completion_tokens=row[n + 3],
        cost_usd=row[n + 4],
        mean_latency_ms=row[n + 5],
    )
    if "bucket" in labels:
        usage.bucket_start.FromSeconds(int(labels["bucket"]))
    return usage
