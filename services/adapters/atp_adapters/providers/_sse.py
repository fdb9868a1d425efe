"""Server-Sent Events decoding for streamed provider replies, and the error a broken stream raises."""

from __future__ import annotations

# Bound on what an upstream can make us hold in one SSE line.
MAX_SSE_LINE_BYTES = 1 << 20


class StreamFormatError(ValueError):
    """A streamed reply broke its wire format (SSE, or AWS's binary event stream)."""


class SseError(StreamFormatError):
    """The event stream broke the SSE format."""


class SseDecoder:
    """Incremental Server-Sent Events decoder: bytes as they arrive in, complete (event, data) pairs out.

    Handles events split across reads, many events per read, CRLF line ends, comments (keepalives) and
    multi-line data. A line that is no SSE field is an error rather than ignored: from an LLM provider it
    means the body is not the stream we asked for (an HTML error page, a proxy's message).
    """

    __slots__ = ("_data", "_event", "_partial")

    def __init__(self) -> None:
        self._partial = b""
        self._event = b""
        self._data: bytes | None = None

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """Decode `chunk`; returns the events it completed, in order."""
        lines = (self._partial + chunk if self._partial else chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_SSE_LINE_BYTES:
            raise SseError(f"an SSE line exceeds {MAX_SSE_LINE_BYTES} bytes")
        events: list[tuple[bytes, bytes]] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[tuple[bytes, bytes]]:
        """End of stream: the last event counts even without its blank line (some servers omit it)."""
        events: list[tuple[bytes, bytes]] = []
        if self._partial:
            self._line(self._partial, events)
            self._partial = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[tuple[bytes, bytes]]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data is not None:
                events.append((self._event, self._data))
            self._event = b""
            self._data = None
            return
        if line[0] == 0x3A:  # ":" starts a comment, which servers send as keepalives
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data = value if self._data is None else self._data + b"\n" + value
        elif name == b"event":
            self._event = value
        elif name not in (b"id", b"retry"):
            raise SseError(f"not an SSE line: {line[:80]!r}")
