"""A pure ASGI middleware that times every request (cheaper than BaseHTTPMiddleware)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OnDone = Callable[[str, int, float, str | None], None]


class RequestObserver:
    """Calls ``on_done(path, status, seconds, request_id)`` once per HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        on_done: OnDone,
        on_start: Callable[[], Any] | None = None,
        on_end: Callable[[], Any] | None = None,
    ) -> None:
        self.app = app
        self.on_done = on_done
        self.on_start = on_start
        self.on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if self.on_start:
            self.on_start()
        try:
            await self.app(scope, receive, capture)
        finally:
            if self.on_end:
                self.on_end()
            request_id = None
            for key, value in scope.get("headers", ()):
                if key == b"x-request-id":
                    request_id = value.decode("latin-1")
                    break
            self.on_done(scope["path"], status, time.perf_counter() - started, request_id)
