"""The console's HTTP layer: pages, their live data, sign-in, and the operators' actions.

``mount_console`` adds ``/ui`` to a gateway. Pages are server-rendered (Jinja2, autoescaped)
with their data embedded as JSON; ``static/console.js`` draws the charts and refreshes the data
and the page's fragments from ``/ui/api/...`` without reloading. Every action goes through
``AdminActions`` with the token's name as the actor, so it is audited exactly like the CLI's.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from router.admin.actions import check_reason
from router.console.access import Access, refuse_cross_site
from router.console.filters import FILTERS
from router.console.views import ConsoleData
from router.core.errors import InvalidInput, Unauthorized, UnsupportedMediaType, echo
from router.core.http import ErrorPage, json_response, read_body
from router.flags.values import CLEAR, parse_value
from router.routing.steering import resolve_variant
from router.routing.table import Route

HERE = Path(__file__).resolve().parent
PREFIX = "/ui"
FORM_LIMIT = 16_384
FORM_TYPE = "application/x-www-form-urlencoded"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
DONE = {
    "flag-set": "flag set",
    "flag-clear": "flag cleared",
    "kill": "kill switch on: all traffic to the control",
    "unkill": "kill switch off",
    "rollback": "rolled back",
    "undo-rollback": "rollback cleared",
    "promote": "promoted",
    "rollout-pause": "rollout paused",
    "rollout-resume": "rollout resumed",
    "rollout-abort": "rollout aborted",
}
Action = Callable[[Route, dict[str, str], str], Awaitable[Any]]


def timed(response: Response, started: float) -> Response:
    """Say how long the server took (``Server-Timing``, read by the benchmark and devtools)."""
    response.headers["Server-Timing"] = f"page;dur={1000 * (time.perf_counter() - started):.1f}"
    return response


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path on this host, nothing else. The path is
    normalized first (a browser resolves ``..``, even percent-encoded, before it asks), so
    ``/ui/../admin`` cannot lead out of the console."""
    home = f"{PREFIX}/"
    if not target or "\\" in target:
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return home
    decoded = unquote(parts.path)
    path = posixpath.normpath(decoded) + ("/" if decoded.endswith("/") else "")
    if path.startswith("//") or not path.startswith(home):
        return home
    return quote(path) + (f"?{parts.query}" if parts.query else "")


async def read_form(request: Request) -> dict[str, str]:
    """A bounded ``application/x-www-form-urlencoded`` body (the console's forms)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM_TYPE:
        raise UnsupportedMediaType(f"content-type must be {FORM_TYPE}")
    try:
        text = (await read_body(request, FORM_LIMIT)).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("form is not valid UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def _field(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise InvalidInput(f"'{name}' is required")
    return value


def mount_console(app: FastAPI, data: ConsoleData, access: Access) -> ErrorPage:
    """Add ``/ui`` to ``app``; returns the error page renderer for its HTML routes."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals["prefix"] = PREFIX
    templates.env.filters.update(FILTERS)
    actions = data.actions
    clock = data.clock
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    router = APIRouter(prefix=PREFIX)

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        session = access.session(request, clock())
        base = {
            "mode": access.mode,
            "signed_in": session.actor if session else None,
            "csrf": session.csrf if session else "",
            "can_sign_in": access.tokens.enabled,
        }
        response = templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    def fragment(request: Request, name: str, context: dict[str, Any]) -> str:
        session = access.session(request, clock())
        template = templates.get_template(name)
        csrf = session.csrf if session else ""
        return template.render({**context, "prefix": PREFIX, "csrf": csrf})

    def gate(request: Request) -> Response | None:
        """Read-only views: open, or a sign-in first (a page) / 401 (data)."""
        if access.may_view(request, clock()):
            return None
        if request.url.path.startswith(f"{PREFIX}/api/"):
            raise Unauthorized("the console needs the admin token: sign in at /ui/login")
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)

    # --- pages --------------------------------------------------------------------------
    @router.get("")
    async def root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @router.get("/")
    async def overview(request: Request) -> Response:
        if (redirect := gate(request)) is not None:
            return redirect
        return render(request, "overview.html", {"page": await data.overview()})

    @router.get("/experiments/{name}")
    async def experiment(request: Request, name: str) -> Response:
        started = time.perf_counter()
        if (redirect := gate(request)) is not None:
            return redirect
        params = request.query_params
        page = await data.experiment(name, params.get("range"), params.get("end"))
        done = DONE.get(params.get("done", ""))
        return timed(render(request, "experiment.html", {"page": page, "done": done}), started)

    @router.get("/api/overview")
    async def overview_data(request: Request) -> Response:
        gate(request)
        page = await data.overview()
        page["fragments"] = {"cards": fragment(request, "_cards.html", {"page": page})}
        return json_response(page, headers={"Cache-Control": "no-store"})

    @router.get("/api/experiments/{name}")
    async def experiment_data(request: Request, name: str) -> Response:
        started = time.perf_counter()
        gate(request)
        params = request.query_params
        page = await data.experiment(name, params.get("range"), params.get("end"))
        context = {"page": page}
        page["fragments"] = {
            part: fragment(request, f"_{part}.html", context)
            for part in (
                "notices",
                "summary",
                "variants",
                "rollout",
                "shadow_table",
                "drift",
                "audit",
            )
        }
        return timed(json_response(page, headers={"Cache-Control": "no-store"}), started)

    # --- signing in ---------------------------------------------------------------------
    @router.get("/login")
    async def login_page(request: Request) -> Response:
        return render(request, "login.html", {"next": safe_next(request.query_params.get("next"))})

    @router.post("/login")
    async def login(request: Request) -> Response:
        refuse_cross_site(request)
        form = await read_form(request)
        target = safe_next(form.get("next"))
        actor = access.tokens.check(form.get("token", "").strip())
        if actor is None:
            context = {"next": target, "error": "That admin token is not valid."}
            return render(request, "login.html", context, status=401)
        cookie, _ = access.issue(actor, clock())
        response = RedirectResponse(target, status_code=303)
        access.set_cookie(response, request, cookie)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        now = clock()
        access.actor_for_action(request, form.get("csrf"), now, signing_out=True)
        session = access.session(request, now)
        if session is not None:  # a bearer token alone has no session to end
            await access.signouts.sign_out(session.nonce, session.expires)
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        access.clear_cookie(response, request)
        return response

    # --- actions ------------------------------------------------------------------------
    async def flag_set(route: Route, form: dict[str, str], actor: str) -> Any:
        flag = _field(form, "flag")
        value = parse_value(form.get("value", ""))
        reason = check_reason(form.get("reason"), False)
        return await actions.change_flag(route, flag, value, actor, reason, "set")

    async def flag_clear(route: Route, form: dict[str, str], actor: str) -> Any:
        flag = _field(form, "flag")
        reason = check_reason(form.get("reason"), False)
        return await actions.change_flag(route, flag, CLEAR, actor, reason, "clear")

    async def kill(route: Route, form: dict[str, str], actor: str) -> Any:
        reason = check_reason(form.get("reason"), False)
        return await actions.change_flag(route, "kill_switch", True, actor, reason, "set")

    async def unkill(route: Route, form: dict[str, str], actor: str) -> Any:
        reason = check_reason(form.get("reason"), False)
        return await actions.change_flag(route, "kill_switch", CLEAR, actor, reason, "clear")

    async def rollback(route: Route, form: dict[str, str], actor: str) -> Any:
        reason = check_reason(form.get("reason"), True)
        return await actions.rollback(route, form.get("to") or None, actor, reason)

    async def undo_rollback(route: Route, form: dict[str, str], actor: str) -> Any:
        reason = check_reason(form.get("reason"), False)
        return await actions.undo_rollback(route, actor, reason)

    async def promote(route: Route, form: dict[str, str], actor: str) -> Any:
        variant = resolve_variant(route.experiment, _field(form, "version"))
        reason = check_reason(form.get("reason"), True)
        return await actions.promote(route, variant, actor, reason)

    def rollout(command: str) -> Action:
        async def run(route: Route, form: dict[str, str], actor: str) -> Any:
            reason = check_reason(form.get("reason"), True)
            return await actions.rollout_command(route, command, actor, reason)

        return run

    handlers: dict[str, Action] = {
        "flag-set": flag_set,
        "flag-clear": flag_clear,
        "kill": kill,
        "unkill": unkill,
        "rollback": rollback,
        "undo-rollback": undo_rollback,
        "promote": promote,
        "rollout-pause": rollout("pause"),
        "rollout-resume": rollout("resume"),
        "rollout-abort": rollout("abort"),
    }

    @router.post("/experiments/{name}/actions/{action}")
    async def act(request: Request, name: str, action: str) -> Response:
        form = await read_form(request)
        actor = access.actor_for_action(request, form.get("csrf"), clock())
        handler = handlers.get(action)
        if handler is None:
            raise InvalidInput(f"unknown action {echo(action)} ({', '.join(handlers)})")
        route = data.route(name)
        result = await handler(route, form, actor)
        if wants_json(request):
            body = result.as_dict() if hasattr(result, "as_dict") else result
            return json_response({"done": DONE[action], "result": body})
        return RedirectResponse(
            f"{PREFIX}/experiments/{name}?done={action}#actions", status_code=303
        )

    app.include_router(router)

    def error_page(request: Request, status: int, code: str, detail: str) -> Response | None:
        path = request.url.path
        if not path.startswith(PREFIX) or path.startswith((f"{PREFIX}/api/", f"{PREFIX}/static/")):
            return None
        if wants_json(request):
            return None
        back = path.split("/actions/", 1)[0] if "/actions/" in path else path
        context = {"status": status, "code": code, "detail": detail, "next": back}
        return render(request, "error.html", context, status=status)

    return error_page
