"""A worker whose model fails to load says why on /readyz instead of loading for ever."""

from __future__ import annotations

from fastapi.testclient import TestClient

from model_workers.registry import LoadedModel
from model_workers.service import create_app
from router.core.errors import NotFound
from router.core.settings import Settings
from router.local.processes import poll_until


def ready_detail(client: TestClient) -> tuple[int, str]:
    answer = client.get("/readyz")
    return answer.status_code, answer.json().get("detail", "")


def test_an_unexpected_load_error_is_reported_not_hidden() -> None:
    def stale_artifact() -> LoadedModel:
        raise AttributeError("Can't get attribute 'gone' on <module 'model_workers.recipes'>")

    with TestClient(create_app(Settings(), stale_artifact)) as client:
        poll_until(lambda: "could not be loaded" in ready_detail(client)[1], 10, what="the error")
        status, detail = ready_detail(client)
        assert status == 503
        assert "AttributeError" in detail and "'gone'" in detail


def test_a_missing_model_is_reported_with_its_reason() -> None:
    def missing() -> LoadedModel:
        raise NotFound("no model profanity/v9 under models/", code="unknown_model")

    with TestClient(create_app(Settings(), missing)) as client:
        poll_until(lambda: "v9" in ready_detail(client)[1], 10, what="the reason")
        assert ready_detail(client)[0] == 503
