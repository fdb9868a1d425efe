"""Prometheus metrics of the observer (bounded labels only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from atp_common.metrics import LATENCY_BUCKETS

INGESTED = Counter(
    "atp_observer_ingested_observations_total",
    "Observations committed, new or duplicate, or refused alone as invalid.",
    ["result"],
)
BATCH_SIZE = Histogram(
    "atp_observer_ingest_batch_size",
    "Observations per ingested batch.",
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384),
)
COMMIT_SECONDS = Histogram(
    "atp_observer_ingest_commit_seconds",
    "Time from a batch's arrival to its commit.",
    buckets=LATENCY_BUCKETS,
)
BUFFER_DEPTH = Gauge("atp_observer_ingest_buffer_observations", "Observations waiting to be written.")
PUSHBACKS = Counter("atp_observer_ingest_pushbacks_total", "Batches refused because the buffer was full.")
DB_ERRORS = Counter("atp_observer_db_errors_total", "Database operations that failed, by operation.", ["op"])
FEEDBACK = Counter("atp_observer_feedback_total", "Feedback recorded, by whether it joined.", ["joined"])
REWARD_WATCHERS = Gauge("atp_observer_reward_watchers", "Open WatchRewards streams.")
REWARDS_SENT = Counter("atp_observer_rewards_sent_total", "Reward events streamed to routers.")
