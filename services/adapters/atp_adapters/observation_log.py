"""The observation log: every observation written to a local segment before its reply ends (no fsync each)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import zlib
from pathlib import Path

from atp.observer.v1 import observer_pb2
from atp_adapters import metrics

log = logging.getLogger("atp.adapters.observation_log")

# Each record: payload length, CRC-32 and kind, then one encoded IngestRequest entry (shipper.py's
# encode_observation; a log left by an older release may also hold the observation's row, which the
# observer skips as an unknown field). A record torn by a crash fails its CRC; the segment's tail from
# there is ignored.
_HEADER = struct.Struct(">IIB")
_SUFFIX = ".obslog"
FINAL = 0
# A stream's observation as it would read if the stream were cut now; superseded by its FINAL record,
# which has the same observation id and start time (the observer stores an id once).
OPEN = 1


class ObservationLog:
    """Segments of observation records in one directory, one process's own.

    `append` is one `write` system call on an unbuffered file: once it returns the record is the kernel's,
    so it survives the process (kill -9 included) though not a machine crash until the next `sync`. Each
    record is settled when the shipper has it acknowledged by the observer or written to the spool (with
    fsync); a segment whose records are all settled is deleted. What a predecessor left is taken back by
    `recover` at start and moved to the spool.

    Bounded: beyond `max_bytes` an observation is not logged (it is still shipped from memory, and
    counted as `unlogged`), so a shipper far behind cannot fill the disk through the log.
    """

    def __init__(self, directory: str | Path, max_bytes: int, segment_bytes: int = 4 << 20) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._leftovers = self._segments()
        self._next_seq = max((int(p.stem) for p in self._leftovers if p.stem.isdigit()), default=0) + 1
        self._fd: int | None = None
        self._active_seq = 0
        self._active_bytes = 0
        self._dirty = False
        # Per segment: records not yet settled, and the bytes it holds.
        self._outstanding: dict[int, int] = {}
        self._bytes: dict[int, int] = {}
        self._size = 0
        metrics.OBSERVATION_LOG_BYTES.set(0)

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{_SUFFIX}"))

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    @property
    def size_bytes(self) -> int:
        """Bytes this process holds in its segments (leftovers not counted)."""
        return self._size

    def recover(self) -> list[bytes]:
        """The entries a predecessor left unsettled, in order: FINAL records, and OPEN records of streams
        that never reached theirs (cut by the process's death). `drop_leftovers` once they are safe."""
        finals: list[bytes] = []
        opens: dict[str, bytes] = {}
        closed: set[str] = set()
        for path in self._leftovers:
            for kind, entry in _records(path):
                observation_id = _observation_id(entry)
                if kind == OPEN:
                    opens[observation_id] = entry
                else:
                    closed.add(observation_id)
                    finals.append(entry)
        cut = [entry for observation_id, entry in opens.items() if observation_id not in closed]
        return finals + cut

    def drop_leftovers(self) -> None:
        """Delete the predecessor's segments (their entries are in the spool now)."""
        for path in self._leftovers:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._leftovers = []

    def append(self, kind: int, entry: bytes) -> int | None:
        """Write one record; its segment's number (for `settle`), or None when the log is full."""
        record = _HEADER.pack(len(entry), zlib.crc32(entry), kind) + entry
        if self._size + len(record) > self.max_bytes:
            metrics.OBSERVATIONS.labels("unlogged").inc()
            return None
        if self._fd is None or self._active_bytes >= self._segment_bytes:
            self._open_segment()
        assert self._fd is not None
        try:
            os.write(self._fd, record)
        except OSError:
            log.exception("the observation log cannot take a record; shipping it from memory only")
            metrics.OBSERVATIONS.labels("unlogged").inc()
            return None
        seq = self._active_seq
        self._active_bytes += len(record)
        self._outstanding[seq] += 1
        self._bytes[seq] += len(record)
        self._size += len(record)
        self._dirty = True
        return seq

    def _open_segment(self) -> None:
        self._seal()
        seq = self._next_seq
        self._next_seq += 1
        # O_APPEND on an unbuffered descriptor: each record is one write, never split by a buffer.
        self._fd = os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active_seq = seq
        self._active_bytes = 0
        self._outstanding[seq] = 0
        self._bytes[seq] = 0

    def _seal(self) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if self._outstanding.get(self._active_seq) == 0:
            self._delete(self._active_seq)

    def settle(self, seq: int | None) -> None:
        """One record of segment `seq` is safe elsewhere (acknowledged, spooled, or superseded)."""
        if seq is None:
            return
        left = self._outstanding.get(seq, 0) - 1
        if left < 0:
            return
        self._outstanding[seq] = left
        if left == 0 and (seq != self._active_seq or self._fd is None):
            self._delete(seq)

    def settle_all(self, seqs: list[int | None]) -> None:
        """`settle` for each of `seqs` (a batch)."""
        for seq in seqs:
            if seq is not None:
                self.settle(seq)

    def rotate_if_settled(self) -> None:
        """Close and delete the active segment when everything in it is settled, so that a process killed
        now leaves nothing to send twice."""
        if self._fd is not None and self._outstanding.get(self._active_seq) == 0:
            self._seal()

    def _delete(self, seq: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(seq).unlink()
        self._size -= self._bytes.pop(seq, 0)
        self._outstanding.pop(seq, None)
        metrics.OBSERVATION_LOG_BYTES.set(self._size)

    async def sync(self) -> None:
        """fsync the active segment (off the event loop) if it was written since the last sync."""
        if self._fd is None or not self._dirty:
            return
        self._dirty = False
        # A duplicate descriptor: the active segment may be sealed (its descriptor closed) meanwhile.
        fd = os.dup(self._fd)
        try:
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the active segment (deleted when settled); unsettled segments stay for the next process."""
        self._seal()
        metrics.OBSERVATION_LOG_BYTES.set(self._size)


def _records(path: Path) -> list[tuple[int, bytes]]:
    data = path.read_bytes()
    records = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc, kind = _HEADER.unpack_from(data, offset)
        entry = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if len(entry) < length or zlib.crc32(entry) != crc:
            log.error("observation log %s has a torn record at %d; ignoring its tail", path, offset)
            break
        records.append((kind, entry))
        offset += _HEADER.size + length
    return records


def _observation_id(entry: bytes) -> str:
    request = observer_pb2.IngestRequest.FromString(entry)
    return request.observations[0].observation_id if request.observations else ""
