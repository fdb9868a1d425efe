"""The admin audit log in both backends: append-only, idempotent on audit_id, newest first in bounded pages,
filtered by tenant and time, and survives a reopen (migration applied once)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_observer.store import Store
from atp_observer.store.audit import MAX_AUDIT_LIMIT

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def entry(n: int, tenant: str = "acme", at: datetime | None = None, **fields: str) -> observer_pb2.AuditEntry:
    made = observer_pb2.AuditEntry(
        audit_id=f"aud_{n}",
        actor_key_id="key_admin",
        actor_role="tenant_admin",
        actor_tenant=tenant,
        action="key.update",
        tenant=tenant,
        target=f"key_{n}",
        before_json=json.dumps({"limits": {}}),
        after_json=json.dumps({"limits": {"requests_per_minute": n}}),
        **fields,
    )
    made.at.FromDatetime(at or T0 + timedelta(minutes=n))
    return made


async def test_entries_are_stored_once_and_read_back_newest_first(store: Store) -> None:
    seqs = [await store.record_audit(entry(n, "acme" if n % 2 else "globex")) for n in range(1, 7)]
    assert [dup for _, dup in seqs] == [False] * 6
    assert [s for s, _ in seqs] == sorted(s for s, _ in seqs)
    # A retried entry (same audit_id) is not stored again and answers the first one's seq.
    assert await store.record_audit(entry(3)) == (seqs[2][0], True)
    every = await store.list_audit("", None, None, 100)
    assert [e.audit_id for e in every] == [f"aud_{n}" for n in range(6, 0, -1)]
    first = every[-1]
    assert first.at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=1)
    assert (first.actor_role, first.action, first.target) == ("tenant_admin", "key.update", "key_1")
    assert json.loads(first.after_json) == {"limits": {"requests_per_minute": 1}}
    acme = await store.list_audit("acme", None, None, 100)
    assert [e.target for e in acme] == ["key_5", "key_3", "key_1"]
    # Pages: two at a time by seq, and a time range [start, end).
    page = await store.list_audit("", None, None, 2)
    next_page = await store.list_audit("", None, None, 2, before_seq=page[-1].seq)
    assert [e.target for e in page + next_page] == ["key_6", "key_5", "key_4", "key_3"]
    ranged = await store.list_audit("", T0 + timedelta(minutes=2), T0 + timedelta(minutes=4), 100)
    assert [e.target for e in ranged] == ["key_3", "key_2"]
    assert len(await store.list_audit("", None, None, 10_000)) == 6  # capped, not refused


async def test_an_entry_without_a_timestamp_is_stamped_now(store: Store) -> None:
    bare = entry(1)
    bare.ClearField("at")
    await store.record_audit(bare)
    (stored,) = await store.list_audit("", None, None, 1)
    assert abs((stored.at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)).total_seconds()) < 60


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"audit_id": ""}, "entry.audit_id"),
        ({"action": ""}, "entry.action"),
        ({"before_json": "[1, 2]"}, "entry.before_json"),
        ({"after_json": "{not json"}, "entry.after_json"),
        ({"after_json": json.dumps({"x": "y" * 20_000})}, "entry.after_json"),
        ({"target": "t" * 300}, "entry.target"),
    ],
)
async def test_bad_entries_are_refused_naming_the_field(
    store: Store, change: dict[str, str], param: str
) -> None:
    bad = entry(1)
    for name, value in change.items():
        setattr(bad, name, value)
    with pytest.raises(InvalidArgument) as refused:
        await store.record_audit(bad)
    assert refused.value.param == param
    assert await store.list_audit("", None, None, MAX_AUDIT_LIMIT) == []


async def test_the_log_survives_a_reopen(make_store: Callable[..., Store]) -> None:
    async with make_store() as first:
        await first.record_audit(entry(1))
    async with make_store() as second:
        assert [e.audit_id for e in await second.list_audit("", None, None, 10)] == ["aud_1"]
