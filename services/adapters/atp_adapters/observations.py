"""Building the observation of one Generate call, for the shipper."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import orjson

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2

OK = observer_pb2.OBSERVATION_STATUS_OK
ERROR = observer_pb2.OBSERVATION_STATUS_ERROR
PARTIAL = observer_pb2.OBSERVATION_STATUS_PARTIAL
CANCELLED = observer_pb2.OBSERVATION_STATUS_CANCELLED


def prompt_hash(messages: Sequence[chat_pb2.ChatMessage]) -> str:
    """SHA-256 over each message's role and content, with separators so that boundaries count."""
    digest = hashlib.sha256()
    for message in messages:
        digest.update(message.role.encode())
        digest.update(b"\x00")
        digest.update(message.content.encode())
        digest.update(b"\x00")
        digest.update(message.content_parts_json)
        digest.update(b"\x1e")
    return digest.hexdigest()


def prompt_text(messages: Sequence[chat_pb2.ChatMessage]) -> str:
    """The prompt as a JSON array of {role, content}, stored only for tenants that opted in."""
    return orjson.dumps(
        [
            {"role": m.role, "content": m.content or m.content_parts_json.decode("utf-8", "replace")}
            for m in messages
        ]
    ).decode()


def new_observation_id() -> str:
    """A random observation id of 32 hex digits (the observer deduplicates on it).

    128 random bits straight from os.urandom: a quarter of uuid4().hex's cost on the request path.
    """
    return os.urandom(16).hex()
