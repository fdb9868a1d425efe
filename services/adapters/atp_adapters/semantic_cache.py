"""Semantic response cache: the nearest stored question of a tenant, by the cosine of static embeddings."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from atp_common.policy.semantic import EMBEDDING_DIM, embed_texts, embedding_table

# Longer questions are matched exactly only: a mean embedding dilutes a small difference in a long text.
MAX_CHARS = 2048
_FIRST_SLOTS = 64

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\u2019-]*|\d+(?:[.,:/]\d+)*|[.!?\n]")
# Words whose presence flips or scopes an answer; an embedding barely moves when one is added.
_NEGATIONS = frozenset("not no never none nothing nobody neither nor without cannot nowhere".split())
_FUNCTION_WORDS = frozenset(
    "a an the is are was were be been am do does did can could would should will shall may might must i me my "
    "you your we our it its this that these those what what's whats which who whom how why when where "
    "please tell give explain describe show let's lets of in on at for to by with about as and or some "
    "any there here".split()
)
_PUNCTUATION = "?!.,;:'\"()"
_NUMBER_WORDS = frozenset(
    "zero two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "million billion trillion half twice double triple first second third fourth fifth last".split()
)


def salient(text: str) -> tuple[str, ...]:
    """What must be equal in two questions for one's reply to answer the other: their names (capitalised
    words not opening a sentence, acronyms) and numbers (digits or words) in order, since a mean embedding
    cannot tell "Celsius to Fahrenheit" from its reverse, and whether they negate."""
    out: list[str] = []
    negated = False
    sentence_start = True
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ".!?\n":
            sentence_start = True
            continue
        lower = token.lower()
        if token[0].isdigit():
            out.append(token.replace(",", ""))
        elif lower in _NEGATIONS or lower.endswith(("n't", "n\u2019t")):
            negated = True
        elif lower in _NUMBER_WORDS:
            out.append(lower)
        elif token[0].isupper() and token != "I" and (not sentence_start or sum(map(str.isupper, token)) > 1):
            out.append(lower)
        sentence_start = False
    if negated:
        out.append("\u00ac")
    return tuple(out)


def content(text: str) -> str:
    """The words an embedding should weigh: the text without the function words every question shares
    ("how do I", "what is the"), which pull all questions together."""
    return " ".join(word for word in text.split() if word.lower().strip(_PUNCTUATION) not in _FUNCTION_WORDS)


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    """One question as the index compares it: the bucket of everything that must match exactly, its unit
    embedding, its salient words and the route's similarity threshold."""

    bucket: int
    vector: np.ndarray
    salient: tuple[str, ...]
    threshold: float


def bucket_id(canonical_rest: bytes) -> int:
    """A non-zero 63-bit id of the request's exact part (slot value 0 marks a free slot)."""
    return (int.from_bytes(hashlib.blake2b(canonical_rest, digest_size=8).digest(), "big") >> 1) | 1


def make_query(text: str, bucket: int, threshold: float) -> SemanticQuery | None:
    """None for a question without words (nothing to compare)."""
    vector = embed_texts([content(text) or text])[0]
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        return None
    return SemanticQuery(bucket, vector / norm, salient(text), threshold)


def warm() -> None:
    """Load the embedding now (start-up), not inside the first request that needs it."""
    embedding_table()


class _TenantIndex:
    """Up to `capacity` questions of one tenant: unit vectors in a matrix grown by doubling, their
    buckets beside them, and the stored replies' keys in least-recently-used order."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        size = min(_FIRST_SLOTS, capacity)
        self._vectors = np.zeros((size, EMBEDDING_DIM), dtype=np.float32)
        self._buckets = np.zeros(size, dtype=np.int64)
        self._keys: list[str] = [""] * size
        self._salient: list[tuple[str, ...]] = [()] * size
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._free = list(range(size - 1, -1, -1))

    def nearest(self, query: SemanticQuery) -> str | None:
        # One product over the whole matrix beats gathering the bucket's rows first (a copy).
        scores = self._vectors @ query.vector
        above = np.flatnonzero((scores >= query.threshold) & (self._buckets == query.bucket))
        for slot in above[np.argsort(-scores[above])].tolist():
            if self._salient[slot] == query.salient:
                key: str = self._keys[slot]
                self._slots.move_to_end(key)
                return key
        return None

    def add(self, key: str, query: SemanticQuery) -> None:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._take_slot()
            self._slots[key] = slot
        else:
            self._slots.move_to_end(key)
        self._vectors[slot] = query.vector
        self._buckets[slot] = query.bucket
        self._keys[slot] = key
        self._salient[slot] = query.salient

    def remove(self, key: str) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None:
            self._buckets[slot] = 0
            self._keys[slot] = ""
            self._salient[slot] = ()
            self._free.append(slot)

    def _take_slot(self) -> int:
        if not self._free:
            size = len(self._buckets)
            if size < self._capacity:
                grown = min(size * 2, self._capacity)
                self._vectors = np.concatenate(
                    [self._vectors, np.zeros((grown - size, EMBEDDING_DIM), np.float32)]
                )
                self._buckets = np.concatenate([self._buckets, np.zeros(grown - size, np.int64)])
                self._keys.extend([""] * (grown - size))
                self._salient.extend([()] * (grown - size))
                self._free = list(range(grown - 1, size - 1, -1))
            else:
                self.remove(next(iter(self._slots)))
        return self._free.pop()

    def __len__(self) -> int:
        return len(self._slots)


class SemanticIndex:
    """Per-tenant indexes of stored questions, at most `entries` each and `tenants` in all (both LRU).

    The index lives in this process; the replies it points to live in the cache's store, so a reply that
    expired there is dropped from the index when a lookup finds it gone.
    """

    def __init__(self, entries: int, tenants: int) -> None:
        self._entries = entries
        self._tenants = tenants
        self._indexes: OrderedDict[str, _TenantIndex] = OrderedDict()

    def nearest(self, tenant: str, query: SemanticQuery) -> str | None:
        """The key of the most similar stored question at or above the threshold whose salient words
        are the same, or None."""
        index = self._indexes.get(tenant)
        return index.nearest(query) if index is not None else None

    def add(self, tenant: str, key: str, query: SemanticQuery) -> None:
        index = self._indexes.get(tenant)
        if index is None:
            if len(self._indexes) >= self._tenants:
                self._indexes.popitem(last=False)
            index = self._indexes[tenant] = _TenantIndex(self._entries)
        else:
            self._indexes.move_to_end(tenant)
        index.add(key, query)

    def remove(self, tenant: str, key: str) -> None:
        index = self._indexes.get(tenant)
        if index is not None:
            index.remove(key)

    def size(self, tenant: str) -> int:
        index = self._indexes.get(tenant)
        return len(index) if index is not None else 0
