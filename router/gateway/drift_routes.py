"""``GET /experiments/{name}/drift``: the last drift check's verdicts, as plain data."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from router.core.errors import NotFound
from router.core.http import json_response
from router.drift.runtime import DriftVerdicts
from router.routing.table import RouteTable


def drift_router(table: RouteTable, verdicts: DriftVerdicts) -> APIRouter:
    router = APIRouter()

    @router.get("/experiments/{name}/drift")
    async def drift(name: str) -> Response:
        route = table.require(name)
        state = await verdicts.latest(route.name)
        if state is None:
            raise NotFound(
                f"{route.name} has no drift check yet (run turnout drift {route.name})",
                code="no_drift_check",
            )
        return json_response({"experiment": route.name, **state.as_dict()})

    return router
