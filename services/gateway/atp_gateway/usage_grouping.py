"""The `group_by` of the usage endpoints: groupings the observer knows, plus `day` or `hour` buckets."""

from __future__ import annotations

import time

from atp_common.errors import InvalidArgument

# What the observer groups usage by (its QueryUsageRequest.group_by), in the order it documents them.
GROUPS = ("tenant", "key", "user", "route", "model", "deployment", "tag")
BUCKETS = {"hour": 3_600, "day": 86_400}
# The observer answers at most this many buckets.
MAX_BUCKETS = 2000


def parse_group_by(group_by: str, start: int | None, end: int | None) -> tuple[list[str], int]:
    """The observer's groupings and bucket size (0: none) for a comma-separated `group_by`, with a 400
    naming the parameter at fault when a name is unknown, both buckets are asked for, or the buckets need a
    start or would be too many between start and end (now when not given)."""
    names = list(dict.fromkeys(name.strip() for name in group_by.split(",") if name.strip()))
    unknown = [name for name in names if name not in GROUPS and name not in BUCKETS]
    if unknown:
        raise InvalidArgument(
            f"group_by takes a comma-separated list of {', '.join((*GROUPS, *BUCKETS))}; "
            f"{', '.join(repr(name[:40]) for name in unknown[:3])} is not one",
            param="group_by",
        )
    buckets = [name for name in names if name in BUCKETS]
    if len(buckets) > 1:
        raise InvalidArgument("group_by takes hour or day, not both", param="group_by")
    bucket_s = BUCKETS[buckets[0]] if buckets else 0
    if bucket_s:
        if start is None:
            raise InvalidArgument(f"grouping by {buckets[0]} needs start", param="start")
        span = (int(time.time()) if end is None else end) - start
        if span / bucket_s > MAX_BUCKETS:
            raise InvalidArgument(
                f"more than {MAX_BUCKETS} {buckets[0]}s between start and end", param="start"
            )
    return [name for name in names if name in GROUPS], bucket_s
