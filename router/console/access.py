"""Who may see and do what in the console: the mode, sessions, and cross-site refusals.

The admin token is typed once into the login form (a POST body, never a URL). The session
cookie holds the token's *name*, an expiry and a nonce, signed with a key derived from that
token (``AdminTokens.derived_key``): any replica with the same tokens accepts it, the token
itself is never in it, and removing the token ends its sessions. Signing out ends one
session (its nonce) on every replica (``router.console.signout``). The cookie is HttpOnly,
SameSite=Strict and scoped to ``/ui``. Every form carries a CSRF token derived from the
session, and every POST from another origin (``Origin``, ``Sec-Fetch-Site``) is refused, since
another port on the same host is the same *site* to a browser. Scripts may instead send
``Authorization: Bearer <token>``, which no cross-site form can.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response

from router.admin.auth import AdminTokens
from router.console.signout import SignOuts
from router.core.errors import TurnoutError, Unauthorized, Unavailable

Mode = Literal["open", "token", "off"]
COOKIE = "turnout_console"
PATH = "/ui"
PURPOSE = "console-session"


class Forbidden(TurnoutError):
    status = 403
    code = "forbidden"


def resolve_mode(asked: Mode | None, host: str) -> Mode:
    """``TURNOUT_UI`` when set; otherwise open on a loopback-bound gateway, token elsewhere."""
    if asked is not None:
        return asked
    return "open" if is_loopback(host) else "token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Session:
    actor: str
    """The admin token's name: what the audit trail records, as for the CLI."""
    expires: float
    nonce: str
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Access:
    def __init__(
        self,
        tokens: AdminTokens,
        mode: Mode,
        session_ttl: int,
        signouts: SignOuts | None = None,
    ) -> None:
        self.tokens = tokens
        self.mode = mode
        self.session_ttl = session_ttl
        self.signouts = signouts or SignOuts(None, session_ttl=session_ttl)

    # --- sessions -----------------------------------------------------------------------
    def _sign(self, actor: str, payload: str, what: str) -> str | None:
        key = self.tokens.derived_key(actor, PURPOSE)
        if key is None:
            return None
        return _b64(hmac.new(key, f"{what}|{payload}".encode(), "sha256").digest())

    def issue(self, actor: str, now: float) -> tuple[str, Session]:
        """A new session for ``actor`` (a token name): the cookie value and the session."""
        nonce = secrets.token_urlsafe(16)
        expires = now + self.session_ttl
        payload = _b64(orjson.dumps({"a": actor, "e": expires, "n": nonce}))
        signature = self._sign(actor, payload, "session")
        csrf = self._sign(actor, nonce, "csrf")
        assert signature is not None and csrf is not None
        return f"{payload}.{signature}", Session(actor, expires, nonce, csrf)

    def session(self, request: Request, now: float) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw or raw.count(".") != 1:
            return None
        payload, signature = raw.split(".")
        try:
            data = orjson.loads(_unb64(payload))
            actor, expires, nonce = str(data["a"]), float(data["e"]), str(data["n"])
        except (ValueError, KeyError, TypeError):
            return None
        expected = self._sign(actor, payload, "session")
        if expected is None or not hmac.compare_digest(expected, signature) or expires < now:
            return None
        if self.signouts.ended(nonce):
            return None
        csrf = self._sign(actor, nonce, "csrf")
        assert csrf is not None
        return Session(actor, expires, nonce, csrf)

    def set_cookie(self, response: Response, request: Request, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.session_ttl,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    # --- who is asking --------------------------------------------------------------------
    def header_actor(self, request: Request) -> str | None:
        header = request.headers.get("authorization")
        return self.tokens.identify(header) if header else None

    def viewer(self, request: Request, now: float) -> str | None:
        """The token name behind a request (a header, or a session), or None."""
        actor = self.header_actor(request)
        if actor is not None:
            return actor
        session = self.session(request, now)
        return session.actor if session else None

    def may_view(self, request: Request, now: float) -> bool:
        return self.mode == "open" or self.viewer(request, now) is not None

    def actor_for_action(
        self, request: Request, form_csrf: str | None, now: float, signing_out: bool = False
    ) -> str:
        """The token name allowed to act, or a refusal: 403 from another origin, 401 without a
        valid token, 403 with a session but no matching CSRF token, 503 for a session while
        this replica cannot know of sign-outs elsewhere (signing out itself always may)."""
        refuse_cross_site(request)
        actor = self.header_actor(request)
        if actor is not None:
            return actor
        if request.headers.get("authorization"):
            raise Unauthorized("that admin token is not valid")
        session = self.session(request, now)
        if session is None:
            raise Unauthorized("sign in with the admin token first")
        given = form_csrf or request.headers.get("x-csrf-token") or ""
        if not hmac.compare_digest(given.encode(), session.csrf.encode()):
            raise Forbidden("the form's CSRF token is missing or stale: reload the page")
        if not signing_out and not self.signouts.current():
            raise Unavailable(
                "Redis is unreachable, so a sign-out on another replica cannot be checked: "
                "console sessions may view but not act; use Authorization: Bearer <token>",
                code="sessions_unchecked",
            )
        return session.actor


def refuse_cross_site(request: Request) -> None:
    """A POST a browser sent from another origin (a forged form, a script elsewhere).

    ``Sec-Fetch-Site``, which no page can set, decides when the browser sends it; otherwise
    ``Origin`` must be this origin. Clients that send neither (curl, scripts) are not browsers
    and still need the token.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site not in ("same-origin", "none"):
            raise Forbidden(f"cross-site request refused (Sec-Fetch-Site: {fetch_site})")
        return
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden("cross-origin request refused (Origin does not match)")
