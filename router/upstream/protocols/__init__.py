"""Protocol adapters: one module per kind of model server, and the registry that names them.

A variant's ``protocol`` picks an entry; its settings model is what the variant's other keys
validate against (``router.config.experiments``), and ``build`` makes the adapter that encodes
requests, decodes answers into the normalized label and score, and checks readiness.
"""

from __future__ import annotations

from router.upstream.protocols import bentoml, http_json, mlflow, open_inference, turnout
from router.upstream.protocols.base import (
    Adapter,
    Call,
    Decoded,
    Payload,
    ProtocolSpec,
    Settings,
)

DEFAULT_PROTOCOL = "turnout"

PROTOCOLS: dict[str, ProtocolSpec] = {
    "turnout": turnout.SPEC,
    "http_json": http_json.SPEC,
    "bentoml": bentoml.SPEC,
    "open_inference": open_inference.SPEC,
    "mlflow": mlflow.SPEC,
}


def build_adapter(protocol: str, settings: Settings) -> Adapter:
    return PROTOCOLS[protocol].build(settings)


__all__ = [
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "Adapter",
    "Call",
    "Decoded",
    "Payload",
    "ProtocolSpec",
    "Settings",
    "build_adapter",
]
