"""DirectoryFollower.catch_up: a reload before the next poll, one store read shared by concurrent callers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from atp_common.config import AtpConfig, hash_api_key
from atp_common.limits.directory import DirectoryFollower, DirectoryState, FileDirectoryStore
from atp_common.limits.key_records import KeyRecord

CONFIG = AtpConfig.model_validate(
    {
        "providers": {"local": {"type": "local"}},
        "models": {"local-small": {"provider": "local"}},
        "routes": {"auto": {"candidates": ["local-small"]}},
        "tenants": {"acme": {"api_keys": [{"hash": hash_api_key("sk-catch-up-file-01"), "name": "file"}]}},
    }
)


class CountingStore(FileDirectoryStore):
    """The real file store, counting loads and holding each one until `gate` opens."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.loads = 0
        self.gate = asyncio.Event()

    async def load(self) -> DirectoryState:
        self.loads += 1
        await self.gate.wait()
        return await super().load()


def _record(key_id: str) -> KeyRecord:
    return KeyRecord(key_id=key_id, digest=key_id * 4, tenant="acme")


async def test_concurrent_callers_share_one_read_and_a_caller_that_gives_up_does_not_cancel_it(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "tenants.json")
    follower = DirectoryFollower(CONFIG, store, poll_s=3600)
    store.gate.set()
    await follower.start()
    try:
        # The configuration file's key is known from the start, by its id.
        assert len(follower.directory.key_ids) == 1
        store.gate.clear()
        loads = store.loads
        await FileDirectoryStore(tmp_path / "tenants.json").put_keys([_record("key_0123456789abcdef")])
        impatient = asyncio.create_task(follower.catch_up())
        waiting = [asyncio.create_task(follower.catch_up()) for _ in range(5)]
        await asyncio.sleep(0.01)
        impatient.cancel()
        store.gate.set()
        await asyncio.gather(*waiting)
        assert store.loads == loads + 1
        assert "key_0123456789abcdef" in follower.directory.key_ids
        # Nothing new: a version read, no load.
        await follower.catch_up()
        assert store.loads == loads + 1
    finally:
        await follower.close()


async def test_close_cancels_a_catch_up_in_flight(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "tenants.json")
    follower = DirectoryFollower(CONFIG, store, poll_s=3600)
    store.gate.set()
    await follower.start()
    store.gate.clear()
    await FileDirectoryStore(tmp_path / "tenants.json").put_keys([_record("key_fedcba9876543210")])
    caller = asyncio.create_task(follower.catch_up())
    await asyncio.sleep(0.01)
    await asyncio.wait_for(follower.close(), 2)
    assert caller.done()
