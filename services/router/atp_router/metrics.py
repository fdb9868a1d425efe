"""Prometheus metrics of the router (bounded labels only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SNAPSHOT_VERSION = Gauge("atp_router_snapshot_version", "Version of the current policy snapshot.")
SNAPSHOT_BYTES = Gauge("atp_router_snapshot_bytes", "Serialized size of the current policy snapshot.")
SNAPSHOTS_PUBLISHED = Counter("atp_router_snapshots_published_total", "Policy snapshots published.")
PUSHES = Counter("atp_router_snapshot_pushes_total", "Snapshots sent to WatchPolicy streams.")
WATCHERS = Gauge("atp_router_policy_watchers", "Open WatchPolicy streams.")
# Labelled by the model the policy chose; models come from configuration, so the label set is bounded.
DECISIONS = Counter("atp_router_decisions_total", "Route decisions, by chosen model.", ["model"])
_decision_children: dict[str, Counter] = {}


def decision(model: str) -> Counter:
    """The (cached) decision counter of one model: labels() takes a lock and hashes on every call."""
    counter = _decision_children.get(model)
    if counter is None:
        counter = _decision_children[model] = DECISIONS.labels(model)
    return counter


REWARDS_APPLIED = Counter("atp_router_rewards_applied_total", "Reward events fed to the learner.")
REWARD_CURSOR = Gauge("atp_router_reward_cursor", "Last reward cursor the learner applied.")
REWARD_STREAM_ERRORS = Counter(
    "atp_router_reward_stream_errors_total", "Reward stream failures (reconnects)."
)
EXCLUSION_REPORTS = Counter(
    "atp_router_exclusion_reports_total", "Circuit reports from adapters replicas, by result.", ["result"]
)
EXCLUDED_MODELS = Gauge("atp_router_reported_exclusions", "Models excluded by adapters' circuit reports.")
EXCLUSION_SHARE_UP = Gauge(
    "atp_router_exclusion_share_up",
    "1 while circuit reports are shared with the other router replicas through Redis, 0 while only this "
    "replica's own reports count (the share is unreachable).",
)
EXCLUSION_SHARE_ERRORS = Counter(
    "atp_router_exclusion_share_errors_total", "Failed or timed-out Redis calls sharing circuit reports."
)
