"""An append-only on-disk spool of observation batches, kept while the observer is unreachable."""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from atp.observer.v1 import observer_pb2

log = logging.getLogger("atp.adapters.spool")

# Each record: payload length and CRC-32 (big-endian u32 each), then a serialized IngestRequest. The CRC
# finds a record torn by a crash mid-write; everything after it in that segment is ignored.
_HEADER = struct.Struct(">II")
_SUFFIX = ".spool"


class SpoolFull(Exception):
    """The spool reached its size cap; the batch was not written."""


class Spool:
    """Segments of length-prefixed IngestRequest records in one directory.

    Appends go to the active segment (fsync per batch). Replay reads the oldest segment, sealing the active
    one first when it is the only one, and deletes a segment only after the caller committed every record
    of it (each acknowledged by the observer). A process that restarts mid-replay sends the segment again
    from its start: the observer is idempotent on observation id, so nothing is stored twice.

    Not thread-safe: the shipper's single task (and its drain) is the only user. Its writes are
    synchronous on purpose: a batch is small and an fsync costs a few milliseconds, once per batch, only
    while the observer is away; that is cheaper and simpler than handing each write to a thread.
    """

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._active: Path | None = None
        self._active_file: BinaryIO | None = None
        self._next_seq = self._highest_seq() + 1
        self._size = sum(p.stat().st_size for p in self._segments())
        # Replay position: the segment being replayed and the offset after its last committed record.
        self._replaying: Path | None = None
        self._replay_offset = 0

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{_SUFFIX}"))

    def _highest_seq(self) -> int:
        seqs = [int(p.stem) for p in self._segments() if p.stem.isdigit()]
        return max(seqs, default=0)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk across every segment."""
        return self._size

    def has_pending(self) -> bool:
        """Whether any batch waits to be replayed."""
        return self._size > 0

    def append(self, request: observer_pb2.IngestRequest) -> None:
        """Write one batch durably (fsync) to the active segment. Raises SpoolFull beyond the cap."""
        self.append_serialized(request.SerializeToString())

    def append_serialized(self, payload: bytes) -> None:
        """`append` for a batch already serialized as an IngestRequest."""
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        if self._size + len(record) > self.max_bytes:
            raise SpoolFull(f"spool {self.directory} is at its cap of {self.max_bytes} bytes")
        if self._active_file is None:
            self._active = self.directory / f"{self._next_seq:020d}{_SUFFIX}"
            self._next_seq += 1
            self._active_file = open(self._active, "ab")
        handle = self._active_file
        handle.write(record)
        handle.flush()
        os.fsync(handle.fileno())
        self._size += len(record)

    def _seal_active(self) -> None:
        if self._active_file is not None:
            self._active_file.close()
            self._active_file = None
            self._active = None

    def peek(self) -> tuple[observer_pb2.IngestRequest, int] | None:
        """The next batch to replay and its end offset (pass it to `commit`), or None when empty."""
        while True:
            if self._replaying is None:
                segments = [p for p in self._segments() if p != self._active]
                if not segments and self._active is not None:
                    self._seal_active()
                    segments = self._segments()
                if not segments:
                    return None
                self._replaying, self._replay_offset = segments[0], 0
            record = self._read_at(self._replaying, self._replay_offset)
            if record is not None:
                return record
            # The segment is done (or its tail is torn): every record before here was committed.
            self._drop_segment(self._replaying)
            self._replaying, self._replay_offset = None, 0

    def _read_at(self, path: Path, offset: int) -> tuple[observer_pb2.IngestRequest, int] | None:
        with open(path, "rb") as handle:
            handle.seek(offset)
            header = handle.read(_HEADER.size)
            if len(header) < _HEADER.size:
                if header:
                    log.error("spool segment %s ends in a torn record header; ignoring its tail", path)
                return None
            length, crc = _HEADER.unpack(header)
            payload = handle.read(length)
        if len(payload) < length or zlib.crc32(payload) != crc:
            log.error("spool segment %s has a torn or corrupt record at %d; ignoring its tail", path, offset)
            return None
        try:
            request = observer_pb2.IngestRequest.FromString(payload)
        except Exception:  # protobuf's DecodeError; the CRC matched, so this is a foreign file
            log.exception("spool segment %s has an undecodable record at %d; skipping it", path, offset)
            return observer_pb2.IngestRequest(), offset + _HEADER.size + length
        return request, offset + _HEADER.size + length

    def commit(self, end_offset: int) -> None:
        """Mark the batch returned by `peek` as acknowledged."""
        self._replay_offset = end_offset

    def _drop_segment(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._size -= path.stat().st_size
            path.unlink()
        self._size = max(self._size, 0)

    def close(self) -> None:
        """Close the active segment; pending segments stay for the next process."""
        self._seal_active()
