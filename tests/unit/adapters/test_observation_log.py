"""The observation log on a real directory: settle and delete, recovery after a death, the cap."""

from __future__ import annotations

from pathlib import Path

from atp.observer.v1 import observer_pb2
from atp_adapters.observation_log import FINAL, OPEN, ObservationLog
from atp_adapters.shipper import encode_observation


def _entry(observation_id: str, status: int = observer_pb2.OBSERVATION_STATUS_OK) -> bytes:
    return encode_observation(
        observer_pb2.Observation(observation_id=observation_id, tenant="t", status=status)
    )


def _ids(entries: list[bytes]) -> list[str]:
    return [observer_pb2.IngestRequest.FromString(e).observations[0].observation_id for e in entries]


def test_settled_segments_are_deleted_and_an_idle_settled_active_one_too(tmp_path: Path):
    log = ObservationLog(tmp_path, max_bytes=1 << 20, segment_bytes=40)
    seqs = [log.append(FINAL, _entry(f"o{i}")) for i in range(6)]
    assert len(set(seqs)) > 1, "small segments rotate"
    assert len(list(tmp_path.iterdir())) == len(set(seqs))
    log.settle_all(seqs[:-1])
    # Only the active segment remains (it still holds the last record).
    assert len(list(tmp_path.iterdir())) == 1
    log.settle(seqs[-1])
    log.rotate_if_settled()
    assert list(tmp_path.iterdir()) == []
    assert log.size_bytes == 0


def test_a_successor_recovers_unsettled_finals_and_open_streams_without_their_final(tmp_path: Path):
    dead = ObservationLog(tmp_path, max_bytes=1 << 20)
    shipped = dead.append(FINAL, _entry("shipped"))
    dead.settle(shipped)
    dead.append(FINAL, _entry("queued"))
    finished = dead.append(OPEN, _entry("finished-stream", observer_pb2.OBSERVATION_STATUS_PARTIAL))
    dead.append(FINAL, _entry("finished-stream"))
    dead.settle(finished)
    dead.append(OPEN, _entry("cut-stream", observer_pb2.OBSERVATION_STATUS_PARTIAL))
    # No close: the process was killed. A torn record at the end (killed mid-write) is ignored.
    with open(next(tmp_path.iterdir()), "ab") as handle:
        handle.write(b"\x00\x00\x01\x00torn")

    successor = ObservationLog(tmp_path, max_bytes=1 << 20)
    entries = successor.recover()
    # "shipped" is still in the (active) segment, so it comes back too: the observer keeps one copy.
    assert _ids(entries) == ["shipped", "queued", "finished-stream", "cut-stream"]
    cut = observer_pb2.IngestRequest.FromString(entries[-1]).observations[0]
    assert cut.status == observer_pb2.OBSERVATION_STATUS_PARTIAL
    successor.drop_leftovers()
    assert list(tmp_path.iterdir()) == []
    # New segments never reuse a predecessor's numbers.
    assert successor.append(FINAL, _entry("next")) == 2


def test_beyond_its_cap_the_log_takes_nothing_and_says_so(tmp_path: Path):
    log = ObservationLog(tmp_path, max_bytes=300)
    taken = [log.append(FINAL, _entry(f"o{i}")) for i in range(20)]
    assert taken[0] is not None
    assert taken[-1] is None
    assert log.size_bytes <= 300
    log.settle_all(taken)
    log.close()
    assert list(tmp_path.iterdir()) == []
