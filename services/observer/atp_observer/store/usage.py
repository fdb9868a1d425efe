"""Usage queries as both backends build them: the groupings, the statement's shape, its rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument

# What usage can be grouped by (the API's names), in the order rows are grouped and sorted, and the SQL
# expressions that group by each. `tag` comes from a join over the observation's tags (see UsageDialect).
GROUPINGS: dict[str, tuple[str, ...]] = {
    "tenant": ("tenant",),
    "key": ("key_id",),
    "user": ("end_user",),
    "route": ("route",),
    "model": ("model",),
    "deployment": ("deployment",),
    "tag": ("coalesce(tag.key, '')", "coalesce(tag.value, '')"),
}
# The UsageRow field each grouping expression fills, in the same order.
_ROW_FIELDS: dict[str, tuple[str, ...]] = {
    "tenant": ("tenant",),
    "key": ("key_id",),
    "user": ("end_user",),
    "route": ("route",),
    "model": ("model",),
    "deployment": ("deployment",),
    "tag": ("tag_key", "tag_value"),
}
# A cost is summed as whole nano-dollars: integers add up exactly in any order, on both backends, where
# floating-point sums depend on the order the database happens to scan. Each cost is rounded half up
# (costs are not negative; a cost outside the bounds, or NaN, counts as nothing rather than failing the
# query). Both backends compute `cost_usd * 1e9 + 0.5` in IEEE doubles, then drop the fraction.
MAX_COST_USD = 1_000_000
NANOS_PER_USD = 1_000_000_000


@dataclass(frozen=True, slots=True)
class UsageDialect:
    """How one backend writes the parts of a usage query that SQL dialects disagree on."""

    # `{bucket_s}` and `{bucket_us}` (the bucket in seconds and microseconds) are filled in; the result is
    # the bucket's start in Unix seconds.
    bucket: str
    # Joins each observation to its tags as `tag(key, value)`, keeping those without tags (NULL, NULL).
    tag_join: str
    # The aggregates: requests, errors (`{errors}` is the list of error statuses), prompt and completion
    # tokens, cost in nano-dollars (`{cost}` is the per-observation expression), mean latency.
    aggregates: tuple[str, ...]
    # One observation's cost in whole nano-dollars, for costs within bounds; NULL otherwise.
    cost_nanos: str


def check_group_by(group_by: Iterable[str]) -> tuple[str, ...]:
    """The groupings in canonical order; unknown names are refused."""
    wanted = set(group_by)
    unknown = wanted.difference(GROUPINGS)
    if unknown:
        raise InvalidArgument(
            f"cannot group usage by {sorted(unknown)}; use any of {', '.join(GROUPINGS)}", param="group_by"
        )
    return tuple(name for name in GROUPINGS if name in wanted)


def usage_query(
    dialect: UsageDialect, groups: Sequence[str], where: Sequence[str], statuses: str, bucket_s: int = 0
) -> str:
    """The usage query: the aggregates per group over the observations matching `where`, grouped first by
    time buckets of `bucket_s` seconds when it is set. `statuses` lists the error statuses."""
    keys = [f"{dialect.bucket.format(bucket_s=bucket_s, bucket_us=bucket_s * 1_000_000)} AS bucket"]
    names = ["bucket"]
    if not bucket_s:
        keys, names = [], []
    for group in groups:
        for i, expression in enumerate(GROUPINGS[group]):
            keys.append(f"{expression} AS g_{group}_{i}")
            names.append(f"g_{group}_{i}")
    cost = dialect.cost_nanos.format(max_cost=MAX_COST_USD, nanos=float(NANOS_PER_USD))
    aggregates = [a.format(errors=statuses, cost=cost) for a in dialect.aggregates]
    sql = f"SELECT {', '.join([*keys, *aggregates])} FROM observations"
    if "tag" in groups:
        sql += f" {dialect.tag_join}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if names:
        sql += f" GROUP BY {', '.join(names)}"
    sql += " HAVING count(*) > 0"
    if names:
        sql += f" ORDER BY {', '.join(names)}"
    return sql


def usage_row(groups: Sequence[str], bucketed: bool, row: Sequence[Any]) -> observer_pb2.UsageRow:
    """A UsageRow from `[bucket], *group values, requests, errors, prompt, completion, cost in nano-dollars,
    mean latency`, the bucket (when `bucketed`) being its start in Unix seconds."""
    usage = observer_pb2.UsageRow()
    n = 0
    if bucketed:
        usage.bucket_start.FromSeconds(int(row[0]))
        n = 1
    for group in groups:
        for field in _ROW_FIELDS[group]:
            setattr(usage, field, row[n])
            n += 1
    requests, errors, prompt, completion, cost_nanos, latency = row[n : n + 6]
    usage.requests = requests
    usage.errors = errors or 0
    usage.prompt_tokens = int(prompt or 0)
    usage.completion_tokens = int(completion or 0)
    usage.cost_nano_usd = int(cost_nanos or 0)
    usage.cost_usd = usage.cost_nano_usd / NANOS_PER_USD
    usage.mean_latency_ms = latency or 0.0
    return usage
