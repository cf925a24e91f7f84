"""The ``Host`` check in front of the console and the admin API (``router.core.hosts``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from router.core.errors import UntrustedHost, cut
from router.core.hosts import host_name, is_guarded, is_trusted, trusted_names
from router.core.http import ErrorResponses


class HostGuard:
    """ASGI middleware: a request for ``/ui`` or ``/admin`` by an untrusted name gets 400
    before any route, static file or sign-in sees it."""

    def __init__(self, app: ASGIApp, trusted: list[str], errors: ErrorResponses) -> None:
        self.app = app
        self.trusted = trusted_names(trusted)
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        header = request.headers.get("host")
        if is_trusted(header, self.trusted):
            await self.app(scope, receive, send)
            return
        asked = repr(cut(host_name(header), 100)) if header is not None else "no Host header"
        refusal = UntrustedHost(
            f"host {asked} is not trusted for the console and admin routes: "
            "add it to TURNOUT_TRUSTED_HOSTS"
        )
        response = await self.errors.turnout(request, refusal)
        await response(scope, receive, send)
