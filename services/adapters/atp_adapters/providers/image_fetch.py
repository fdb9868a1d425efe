"""Fetching http(s) images for providers that take images only inline (Gemini), within fixed bounds."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from atp.common.v1 import chat_pb2
from atp_adapters.providers.base import USER_AGENT, ProviderError

DEFAULT_MAX_BYTES = 8 << 20
DEFAULT_TIMEOUT_S = 10.0
# Gemini refuses requests whose inline data passes 20 MB, so a request's images together stop there.
MAX_TOTAL_BYTES = 20 << 20
_MAX_REDIRECTS = 3
_CONCURRENT_FETCHES = 8


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """What one image fetch may take: bytes, seconds, and whether private addresses may be reached."""

    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_s: float = DEFAULT_TIMEOUT_S
    allow_private: bool = False
    max_total_bytes: int = MAX_TOTAL_BYTES


class _Budget:
    """What one request's fetches may still read, together, and how many may run at once."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.left = total
        self.slots = asyncio.Semaphore(_CONCURRENT_FETCHES)


def remote_images(messages: Sequence[chat_pb2.ChatMessage]) -> list[tuple[int, int]]:
    """(message, part) positions of the http(s) images in `messages`."""
    found = []
    for i, message in enumerate(messages):
        for j, part in enumerate(message.parts):
            if part.WhichOneof("kind") == "image" and part.image.url.startswith(("http://", "https://")):
                found.append((i, j))
    return found


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global


class PublicResolver(AbstractResolver):
    """Resolves only to global addresses: a client's image URL must not reach our internal network."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        results = [r for r in await self._inner.resolve(host, port, family) if _is_public(r["host"])]
        if not results:
            raise OSError(f"{host} resolves to no public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


class ImageFetcher:
    """Fetches images over its own pooled session (a resolver that refuses private addresses)."""

    def __init__(self, provider: str, limits: FetchLimits) -> None:
        self.provider = provider
        self.limits = limits
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = None if self.limits.allow_private else PublicResolver()
            connector = aiohttp.TCPConnector(limit=32, resolver=resolver)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT}, trust_env=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _refuse(self, path: str, why: str) -> ProviderError:
        # A request fault (kind unsupported: a 400 naming the part), not the provider's: it fails over.
        return ProviderError(
            f"provider {self.provider} cannot fetch the image at {path}: {why}",
            kind="unsupported",
            provider=self.provider,
            param=path,
        )

    def _check_host(self, url: URL, path: str) -> None:
        if url.scheme not in ("http", "https"):
            raise self._refuse(path, f"scheme {url.scheme!r}")
        if self.limits.allow_private:
            return
        try:
            public = _is_public((url.host or "").strip("[]"))
        except ValueError:
            return  # a name: the resolver admits only its public addresses
        if not public:
            raise self._refuse(path, "the host is a private address")

    async def data_url(self, url: str, path: str, remaining: float | None, budget: _Budget) -> str:
        """The image at `url` as a data: URL; refused (naming `path`) when it breaks a limit."""
        timeout = self.limits.timeout_s if remaining is None else min(self.limits.timeout_s, remaining)
        try:
            async with asyncio.timeout(max(timeout, 0.0)), budget.slots:
                return await self._get(URL(url), path, budget)
        except TimeoutError as exc:
            raise self._refuse(path, f"no complete answer within {timeout:.2g}s") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise self._refuse(path, str(exc) or type(exc).__name__) from exc

    async def _get(self, url: URL, path: str, budget: _Budget) -> str:
        # Redirects are followed here, not by aiohttp, so that every hop's host is checked.
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_host(url, path)
            async with self._client().get(url, allow_redirects=False) as response:
                location = response.headers.get("location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    url = url.join(URL(location))
                    continue
                return await self._read(response, path, budget)
        raise self._refuse(path, f"more than {_MAX_REDIRECTS} redirects")

    async def _read(self, response: aiohttp.ClientResponse, path: str, budget: _Budget) -> str:
        limit = self.limits.max_bytes
        if response.status != 200:
            raise self._refuse(path, f"HTTP {response.status}")
        media_type = response.content_type
        if not media_type.startswith("image/"):
            raise self._refuse(path, f"content type {media_type!r} is not an image")
        if response.content_length is not None and response.content_length > limit:
            raise self._refuse(path, f"{response.content_length} bytes exceed {limit}")
        chunks: list[bytes] = []
        size = 0
        while chunk := await response.content.readany():
            size += len(chunk)
            budget.left -= len(chunk)
            if size > limit:
                raise self._refuse(path, f"more than {limit} bytes")
            if budget.left < 0:
                raise self._refuse(path, f"the request's images pass {budget.total} bytes together")
            chunks.append(chunk)
        return f"data:{media_type};base64," + base64.b64encode(b"".join(chunks)).decode("ascii")

    async def inline(
        self, messages: Sequence[chat_pb2.ChatMessage], remaining: float | None
    ) -> list[chat_pb2.ChatMessage]:
        """A copy of `messages` with every http(s) image replaced by its data: URL, fetched together."""
        positions = remote_images(messages)
        out = list(messages)
        copies: dict[int, chat_pb2.ChatMessage] = {}
        for i, _ in positions:
            if i not in copies:
                copies[i] = chat_pb2.ChatMessage()
                copies[i].CopyFrom(messages[i])
                out[i] = copies[i]
        budget = _Budget(self.limits.max_total_bytes)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(
                        self.data_url(
                            messages[i].parts[j].image.url, f"messages[{i}].content[{j}]", remaining, budget
                        )
                    )
                    for i, j in positions
                ]
        except ExceptionGroup as failed:
            # The first refusal names its part; the other fetches were cancelled with it.
            raise failed.exceptions[0] from None
        for (i, j), task in zip(positions, tasks, strict=True):
            copies[i].parts[j].image.url = task.result()
        return out
