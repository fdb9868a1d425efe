"""What the console's queries share across backends: observation filters, time buckets and feedback rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument

MIN_BUCKET_S = 60
MAX_BUCKET_S = 86_400
# Bounds one answer: a month of hours or five years of days.
MAX_BUCKETS = 2000
MAX_FEEDBACK = 100

FEEDBACK_COLUMNS = "feedback_id, score, label, comment, source, created_at"


@dataclass(frozen=True, slots=True)
class ObservationFilters:
    """Optional narrowing of a tenant's observations; empty values filter nothing."""

    model: str = ""
    route: str = ""
    status: int = 0
    after: datetime | None = None


def filter_conditions(
    filters: ObservationFilters | None, param: Callable[[Any], str], to_micros: Callable[[datetime], int]
) -> list[str]:
    """SQL conditions for `filters`; `param` binds a value and returns its placeholder."""
    if filters is None:
        return []
    where = []
    if filters.model:
        where.append(f"model = {param(filters.model)}")
    if filters.route:
        where.append(f"route = {param(filters.route)}")
    if filters.status:
        where.append(f"status = {param(filters.status)}")
    if filters.after is not None:
        where.append(f"started_at >= {param(to_micros(filters.after))}")
    return where


def check_bucket(bucket_s: int, start: datetime | None, end: datetime | None, now: datetime) -> None:
    """Refuse a bucket size outside the bounds, or a range that would make too many buckets."""
    if not bucket_s:
        return
    if not MIN_BUCKET_S <= bucket_s <= MAX_BUCKET_S:
        raise InvalidArgument(
            f"bucket_seconds must be between {MIN_BUCKET_S} and {MAX_BUCKET_S}", param="bucket_seconds"
        )
    if start is None:
        raise InvalidArgument("time buckets need a start", param="start")
    span = ((end or now) - start).total_seconds()
    if span / bucket_s > MAX_BUCKETS:
        raise InvalidArgument(
            f"more than {MAX_BUCKETS} buckets between start and end", param="bucket_seconds"
        )


def feedback_record(row: Sequence[Any], created_micros: int) -> observer_pb2.FeedbackRecord:
    """A FeedbackRecord from a FEEDBACK_COLUMNS row (created_at given in Unix microseconds)."""
    record = observer_pb2.FeedbackRecord(
        feedback_id=row[0], score=row[1], label=row[2], comment=row[3], source=row[4]
    )
    record.created_at.FromMicroseconds(created_micros)
    return record
