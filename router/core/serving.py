"""How every Turnout process serves HTTP: uvicorn, guarded against slow, idle and too many clients.

uvicorn bounds none of these by itself: a connection that sends nothing, a request head that
trickles in byte by byte, or a body that stops halfway would each hold a socket for as long as
the client likes. Here:

- a connection idle before its first request, or between requests, closes after
  ``http_keep_alive_timeout``;
- a request head must arrive whole within ``http_header_timeout`` (else 408, then close);
- a body must arrive whole within ``http_body_timeout`` of the head (else 408, then close);
- past ``http_max_connections`` open connections a new one gets 503 at once and is closed;
- a request that is not HTTP gets a JSON 400, like every other refusal;
- a connection closed while the client may still be sending (a refusal before the body was
  read, with ``Connection: close``) closes lingering, as nginx does: the answer goes out, the
  write side is shut, and what the client still sends is read and discarded until it closes
  or ``http_body_timeout`` passes. A plain close would reset the connection under a client
  still sending, and most clients then report the reset instead of the answer.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle, Transport
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from router.core.errors import RequestTimeout
from router.core.settings import Settings


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    keep_alive: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.http_header_timeout,
            settings.http_body_timeout,
            settings.http_keep_alive_timeout,
            settings.http_max_connections,
        )


def raw_error(status: int, reason: str, code: str, detail: str) -> bytes:
    """A whole JSON error response written straight to a socket, closing the connection."""
    body = orjson.dumps({"error": code, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class LingeringTransport:
    """A transport whose ``close()`` lingers while ``may_send()`` says the client may still be
    sending: it shuts the write side (the answer is flushed first), keeps reading, and closes
    for good when the client does, or after ``seconds``.

    Writes made in one turn of the event loop go out in one call at its end: uvicorn writes a
    response's head and body apart, two system calls where one does. Everything else is the
    transport's."""

    def __init__(
        self,
        transport: Transport,
        may_send: Callable[[], bool],
        seconds: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.transport = transport
        self.may_send = may_send
        self.seconds = seconds
        self.loop = loop
        self.lingering = False
        self.timer: TimerHandle | None = None
        self.pending: list[bytes] | None = None
        self.get_extra_info = transport.get_extra_info  # bound once rather than looked up

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    def write(self, data: bytes) -> None:
        if self.pending is None:
            self.pending = [data]
            self.loop.call_soon(self.flush)
        else:
            self.pending.append(data)

    def flush(self) -> None:
        pending, self.pending = self.pending, None
        if pending and not self.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def is_closing(self) -> bool:
        return self.lingering or self.transport.is_closing()

    def close(self) -> None:
        if self.is_closing():
            return
        self.flush()
        if not self.may_send() or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.lingering = True
        self.transport.write_eof()
        self.transport.resume_reading()
        self.timer = self.loop.call_later(self.seconds, self.transport.close)

    def closed(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with idle, head and connection-count limits, closing
    lingering while a client may still be sending."""

    class GuardedHttpProtocol(HttpToolsProtocol):
        head_timer: TimerHandle | None = None
        open_cycles: list[RequestResponseCycle] | None = None
        """Every request of this connection not answered yet, pipelined ones included."""
        linger: LingeringTransport | None = None
        mid_request = False
        """A request head arrived and its body is not whole yet."""
        refused = False
        """Answered without parsing (503, 400, 408): whatever comes next is unread."""

        def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
            self.linger = LingeringTransport(
                transport,
                lambda: self.mid_request or self.refused,
                limits.body_timeout,
                self.loop,
            )
            if len(self.connections) >= limits.max_connections:
                self.transport = cast(Transport, self.linger)
                self._refuse(
                    raw_error(
                        503,
                        "Service Unavailable",
                        "too_many_connections",
                        f"the server holds {limits.max_connections} connections already",
                    )
                )
                return
            super().connection_made(cast(Transport, self.linger))
            # Idle before the first request too: the same limit as between requests.
            self.timeout_keep_alive_task = self.loop.call_later(
                limits.keep_alive, self.timeout_keep_alive_handler
            )

        def data_received(self, data: bytes) -> None:
            if self.linger is not None and self.linger.lingering:
                return  # read and dropped: the answer is out, the client is still sending
            super().data_received(data)

        def on_message_begin(self) -> None:
            self.mid_request = True
            super().on_message_begin()
            self._cancel_head_timer()
            self.head_timer = self.loop.call_later(limits.header_timeout, self._head_too_slow)

        def on_headers_complete(self) -> None:
            self._cancel_head_timer()
            super().on_headers_complete()
            if self.cycle is not None:
                pending = [c for c in self.open_cycles or [] if not c.response_complete]
                self.open_cycles = [*pending, self.cycle]

        def on_message_complete(self) -> None:
            self.mid_request = False
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            if self.linger is not None:
                self.linger.closed()
            # uvicorn marks only the last request it parsed as disconnected; with pipelining
            # the one still running would then write to a closed socket (an error and a
            # traceback per client that hangs up early).
            for cycle in self.open_cycles or []:
                if not cycle.response_complete:
                    cycle.disconnected = True
                    cycle.message_event.set()
            self.open_cycles = None
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._refuse(raw_error(400, "Bad Request", "bad_request", msg))

        def _head_too_slow(self) -> None:
            self.head_timer = None
            if not self.transport.is_closing():
                detail = f"the request head did not arrive within {limits.header_timeout:g}s"
                self._refuse(raw_error(408, "Request Timeout", "request_timeout", detail))

        def _refuse(self, answer: bytes) -> None:
            self.refused = True
            self.transport.write(answer)
            self.transport.close()

        def _cancel_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

    return GuardedHttpProtocol


class BodyDeadline:
    """ASGI middleware: the whole body must arrive within ``seconds`` of the request's head; a
    read past it raises ``RequestTimeout`` inside the app (a JSON 408, then the connection
    closes)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def bounded() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {self.seconds:g}s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, bounded, send)


def serve(app: Any, host: str, port: int, settings: Settings) -> None:
    """Run an ASGI app the way every Turnout process runs: our JSON logs, graceful shutdown,
    and the connection limits above."""
    import uvicorn

    limits = ConnectionLimits.from_settings(settings)
    uvicorn.run(
        BodyDeadline(app, limits.body_timeout),
        host=host,
        port=port,
        http=guarded_protocol(limits),
        # No Turnout process serves WebSockets: an Upgrade request stays plain HTTP, answered by
        # the app in JSON, not by the websockets library in plain text.
        ws="none",
        log_config=None,
        access_log=False,
        # On SIGTERM: stop accepting, let in-flight requests finish for ``drain_timeout``
        # seconds, then the app's own shutdown (the gateway flushes its buffered events).
        timeout_graceful_shutdown=settings.drain_timeout,
        timeout_keep_alive=int(limits.keep_alive),
    )
