"""The web dashboard: static files (HTML, CSS, JavaScript written by hand, no build step)
served at `/` and `/dashboard/`. The page holds no data: it reads everything from the API
with the key the user enters, so the guard lets these paths through without one."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC = Path(__file__).with_name("static")
PREFIX = "/dashboard"
#: The page may load and call nothing but this server: no CDN, no other host, no inline
#: script (a stolen key could otherwise leave with an injected one).
POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HEADERS = [
    (b"content-security-policy", POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # A new version of the server serves new files: the browser asks again each time.
    (b"cache-control", b"no-cache"),
]


def is_dashboard(path: str) -> bool:
    return path == "/" or path.startswith(PREFIX + "/")


class _Secured:
    """Adds the headers above to every response of the wrapped app."""

    def __init__(self, app: StaticFiles) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_secured)


def install(api: FastAPI) -> None:
    headers = {name.decode(): value.decode() for name, value in _HEADERS}

    @api.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=headers)

    api.mount(PREFIX, _Secured(StaticFiles(directory=STATIC)), name="dashboard")
