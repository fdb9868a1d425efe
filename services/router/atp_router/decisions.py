"""A bounded log of the router's own decisions, for Explain."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from atp.common.v1 import chat_pb2


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One decision as Explain returns it."""

    decision: chat_pb2.Decision
    tenant: str
    decided_at_ns: int


class DecisionLog:
    """The last `capacity` decisions by id; the least recently used one goes first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, LoggedDecision] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, decision: chat_pb2.Decision, tenant: str, decided_at_ns: int) -> None:
        """Remember a decision, evicting the oldest when full."""
        entries = self._entries
        entries[decision.decision_id] = LoggedDecision(decision, tenant, decided_at_ns)
        entries.move_to_end(decision.decision_id)
        if len(entries) > self._capacity:
            entries.popitem(last=False)

    def get(self, decision_id: str) -> LoggedDecision | None:
        """The decision with this id, if still logged."""
        entry = self._entries.get(decision_id)
        if entry is not None:
            self._entries.move_to_end(decision_id)
        return entry
