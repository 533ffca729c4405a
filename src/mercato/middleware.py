"""ASGI middleware that is not specific to one domain."""

from __future__ import annotations

import asyncio
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _semaphore(owner: RequestGate | WriterGate, limit: int) -> asyncio.Semaphore:
    """The owner's semaphore for the running event loop (a test client may start another)."""
    loop = asyncio.get_running_loop()
    if owner._gate is None or owner._gate[0] is not loop:
        owner._gate = (loop, asyncio.Semaphore(limit))
    return owner._gate[1]


class RequestGate:
    """Lets at most ``limit`` requests of this process into the application at once.

    A synchronous endpoint takes a worker thread for each dependency and again for its
    body, and holds its database connection from the first query (authentication) to the
    end. With more requests in flight than connections, requests that already hold a
    connection wait for a worker thread that is taken by requests waiting for a
    connection: nobody moves until the pool's timeout. Admitting fewer requests than
    there are worker threads (40) and connections keeps every admitted request moving;
    the others wait in the event loop, holding nothing. Server-Sent Event streams hold no
    connection and are not counted.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].endswith("/stream"):
            await self.app(scope, receive, send)
            return
        async with _semaphore(self, self.limit):
            await self.app(scope, receive, send)


class WriterGate:
    """Lets at most ``limit`` unsafe requests of this process run at once (SQLite only).

    A SQLite write transaction takes the database-wide write lock at its first statement,
    which for an API request is the authentication lookup. The request then needs a worker
    thread again for its endpoint; if every worker thread were taken by other writers
    waiting for that same lock, the lock holder could not continue until the busy timeout
    expired. Keeping the number of concurrent writers below the thread pool size leaves
    the lock holder a thread. (PostgreSQL locks rows, not the database, so it needs no gate.)
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        async with _semaphore(self, self.limit):
            await self.app(scope, receive, send)


class RequestIdMiddleware:
    """Every request gets an id (the caller's ``X-Request-ID`` or a new one), echoed back
    and written on audit entries, so one request can be followed through the logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = given.decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
