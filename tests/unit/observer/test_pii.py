"""Feedback comments are stored with PII redacted for tenants (or globally) configured so, and only then."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import AtpConfig
from atp_observer.server import build_server
from atp_observer.settings import ObserverSettings

COMMENT = "wrong answer, mail me at jane@example.com or call +1 415 555 2671"


async def test_feedback_comments_are_redacted_before_they_are_stored(tmp_path: Path) -> None:
    config = AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": {"m": {"provider": "local"}},
            "routes": {"auto": {"candidates": ["m"]}},
            "tenants": {"private": {"redact_pii": True}, "open": {}},
        }
    )
    database = tmp_path / "observer.sqlite3"
    settings = ObserverSettings(port=0, metrics_port=None, sqlite_path=str(database), drain_delay_s=0)
    running = await build_server(settings, config=config)
    channel = open_channel(running.address)
    try:
        stub = observer_pb2_grpc.ObserverServiceStub(channel)
        for tenant in ("private", "open"):
            await stub.RecordFeedback(
                observer_pb2.RecordFeedbackRequest(
                    decision_id=f"d-{tenant}", tenant=tenant, score=0.0, comment=COMMENT
                ),
                timeout=5,
            )
    finally:
        await channel.close()
        await running.stop_now()
    with sqlite3.connect(database) as db:
        stored = dict(db.execute("SELECT tenant, comment FROM feedback").fetchall())
    assert stored["private"] == "wrong answer, mail me at [EMAIL] or call [PHONE]"
    assert stored["open"] == COMMENT
