"""The web console at /console: static pages shipped in this package that call the admin API from the browser."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from atp_gateway.console.api import console_api
from atp_gateway.gateway import Gateway

__all__ = ["STATIC_DIR", "mount_console"]

STATIC_DIR = Path(__file__).parent / "static"
PATH = "/console"

# Only this origin's own files and API: no CDN, no inline script, no framing by another site.
_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # The pages change with the package; the browser asks again (a 304 when unchanged).
    (b"cache-control", b"no-cache"),
]


class _ConsoleFiles(StaticFiles):
    """The static files with the console's security headers on every reply."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def mount_console(app: FastAPI, gateway: Gateway) -> None:
    """Serve the console's files at /console/ and add the admin endpoints it reads."""
    app.include_router(console_api(gateway))

    @app.get(PATH, include_in_schema=False)
    async def console_root() -> Response:
        return RedirectResponse(f"{PATH}/", status_code=308)

    app.mount(f"{PATH}/", _ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
