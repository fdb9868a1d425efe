"""Building the observation of one Generate call, for the shipper."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence

import orjson

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2

OK = observer_pb2.OBSERVATION_STATUS_OK
ERROR = observer_pb2.OBSERVATION_STATUS_ERROR
PARTIAL = observer_pb2.OBSERVATION_STATUS_PARTIAL
CANCELLED = observer_pb2.OBSERVATION_STATUS_CANCELLED


def prompt_hash(messages: Sequence[chat_pb2.ChatMessage]) -> str:
    """SHA-256 over each message's role, content and parts, with separators so that boundaries count."""
    digest = hashlib.sha256()
    for message in messages:
        digest.update(message.role.encode())
        digest.update(b"\x00")
        digest.update(message.content.encode())
        digest.update(b"\x00")
        for part in message.parts:
            digest.update(part.SerializeToString(deterministic=True))
            digest.update(b"\x1f")
        digest.update(b"\x1e")
    return digest.hexdigest()


def _stored_part(part: chat_pb2.ContentPart) -> dict[str, str]:
    """A part as stored with the prompt: text as sent; media by reference, never its inline data."""
    kind = part.WhichOneof("kind") or ""
    if kind == "text":
        return {"type": "text", "text": part.text}
    if kind == "refusal":
        return {"type": "refusal", "refusal": part.refusal}
    if kind == "image":
        url = part.image.url
        return {"type": "image", "url": url if not url.startswith("data:") else f"data: ({len(url)} chars)"}
    if kind == "file":
        file = part.file
        stored = {"type": "file", "file_id": file.file_id, "filename": file.filename, "url": file.url}
        if file.content:
            stored["text"] = "\n".join(file.content)
        return stored
    if kind == "search_result":
        found = part.search_result
        return {
            "type": "search_result",
            "source": found.source,
            "title": found.title,
            "text": "\n".join(found.content),
        }
    return {"type": kind}


def prompt_text(messages: Sequence[chat_pb2.ChatMessage]) -> str:
    """The prompt as a JSON array of {role, content}, stored only for tenants that opted in.

    Content given as parts is stored as a list of parts (see `_stored_part`).
    """
    return orjson.dumps(
        [
            {
                "role": m.role,
                "content": [_stored_part(p) for p in m.parts] if m.parts else m.content,
            }
            for m in messages
        ]
    ).decode()


def new_observation_id() -> str:
    """A random observation id of 32 hex digits (the observer deduplicates on it).

    128 random bits straight from os.urandom: a quarter of uuid4().hex's cost on the request path.
    """
    return os.urandom(16).hex()


def open_stream(
    log_open: Callable[[observer_pb2.Observation], int | None],
    *,
    request_id: str,
    tenant: str,
    decision: chat_pb2.Decision,
    started_wall: float,
    replica_id: str,
) -> tuple[str, int | None]:
    """Log a stream's observation as it reads if the stream is cut before its end (the process dies):
    PARTIAL, `Interrupted`, the prompt's estimated tokens. Returns its id (the final observation reuses it
    and the start time, so the observer keeps one of the two) and the log's token for `submit`."""
    observation_id = new_observation_id()
    candidate = decision.candidates[0]
    usage = chat_pb2.Usage(prompt_tokens=decision.features.estimated_prompt_tokens, estimated=True)
    started_ns = int(started_wall * 1e9)
    observation = observer_pb2.Observation(
        observation_id=observation_id,
        request_id=request_id,
        tenant=tenant,
        decision=decision,
        model=candidate.model,
        provider=candidate.provider,
        usage=usage,
        status=PARTIAL,
        error_class="Interrupted",
        replica_id=replica_id,
    )
    observation.started_at.FromNanoseconds(started_ns)
    observation.finished_at.FromNanoseconds(started_ns)
    return observation_id, log_open(observation)
