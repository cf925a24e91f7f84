"""The one way the CLI reaches a gateway; every failure becomes a clear exit."""

from __future__ import annotations

from typing import Any

import httpx

from router.cli.common import fail
from router.core.settings import Settings
from router.core.state import StateFolder


def gateway_url(url: str | None, settings: Settings) -> str:
    """``--url``, else TURNOUT_ADMIN_URL, else the local gateway (TURNOUT_HOST:TURNOUT_PORT)."""
    chosen = url or settings.admin_url or f"http://{settings.host}:{settings.port}"
    return chosen.rstrip("/")


def local_admin_token(url: str, settings: Settings) -> str | None:
    """The admin token ``turnout up`` made in the state folder, for its own gateway only: a
    token is never sent to a gateway it was not made for."""
    admin = StateFolder(settings.state_dir).read_admin_token()
    return admin.token if admin is not None and admin.gateway_url == url else None


class GatewayError(Exception):
    """The gateway could not be reached, or refused."""


class GatewayClient:
    """The gateway's HTTP API as the CLI uses it."""

    def __init__(self, url: str | None, token: str | None, need_token: bool = False) -> None:
        settings = Settings()
        self.url = gateway_url(url, settings)
        secret = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.token = token or secret or local_admin_token(self.url, settings)
        if need_token and not self.token:
            raise fail(
                "no admin token: pass --token or set TURNOUT_ADMIN_TOKEN (a local stack "
                "started by `turnout up` without configured tokens makes one in its state "
                "folder, TURNOUT_STATE_DIR)",
                2,
            )
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        admin: bool = True,
    ) -> Any:
        """The answer's JSON, or ``GatewayError`` saying why there is none."""
        headers = {"authorization": f"Bearer {self.token}"} if admin and self.token else {}
        try:
            response = self.client.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise GatewayError(f"cannot reach the gateway at {self.url}: {exc}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": "http_error", "detail": response.text[:200]}
        if response.status_code >= 400:
            detail = payload.get("detail", "") if isinstance(payload, dict) else ""
            error = payload.get("error", "") if isinstance(payload, dict) else ""
            if response.status_code == 404 and error == "not_found" and path.startswith("/admin"):
                detail = "the admin API is off on this gateway (no admin tokens configured)"
            raise GatewayError(f"refused ({response.status_code} {error}): {detail}")
        return payload

    def call(self, method: str, path: str, **options: Any) -> Any:
        """``request``, with a refusal printed and turned into exit 1."""
        try:
            return self.request(method, path, **options)
        except GatewayError as exc:
            raise fail(str(exc)) from None

    def predictions(self, concurrency: int) -> httpx.AsyncClient:
        """An async client for many public calls at once (``turnout replay``)."""
        limits = httpx.Limits(max_connections=concurrency)
        return httpx.AsyncClient(base_url=self.url, timeout=30.0, limits=limits)
