"""A loopback HTTP server of images (and of things that are not images) for the image fetch tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


class ImageServer:
    """GET /ok.png, /big.png (`big_size` bytes, with a length), /stream.png (`big_size` bytes, chunked,
    no length), /page.html (not an image), /slow.png (answers after `slow_s`), /hop.png (a redirect to
    /ok.png), /missing.png (404); 403 for a library's default User-Agent. `requests` counts what was asked
    for."""

    def __init__(self, big_size: int = 4096, slow_s: float = 5.0) -> None:
        self.big_size = big_size
        self.slow_s = slow_s
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        # A handler still running at shutdown (a /slow.png the client gave up on) has nobody waiting for it.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.05)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append(name)
        if request.headers.get("User-Agent", "").startswith(("Python/", "python-")):
            # As image hosts such as Wikimedia's do: a library's default agent is refused.
            raise web.HTTPForbidden(text="set a User-Agent that says who you are")
        if name == "ok.png":
            return web.Response(body=PNG_BYTES, content_type="image/png")
        if name == "big.png":
            return web.Response(body=b"\x00" * self.big_size, content_type="image/png")
        if name == "stream.png":
            response = web.StreamResponse(headers={"content-type": "image/png"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(0, self.big_size, 1024):
                await response.write(b"\x00" * 1024)
            await response.write_eof()
            return response
        if name == "page.html":
            return web.Response(text="<html></html>", content_type="text/html")
        if name == "slow.png":
            await asyncio.sleep(self.slow_s)
            return web.Response(body=PNG_BYTES, content_type="image/png")
        if name == "hop.png":
            raise web.HTTPFound("/ok.png")
        raise web.HTTPNotFound()


@asynccontextmanager
async def running_image_server(**kwargs: float) -> AsyncIterator[ImageServer]:
    server = ImageServer(**kwargs)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
