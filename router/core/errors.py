"""Turnout's error hierarchy. No web imports: ``router.http`` maps these to responses."""

from __future__ import annotations

ECHO_LIMIT = 200
"""Most characters of a client's value an error detail quotes: enough to see what was refused,
never a 100,000-character label handed back whole."""


def cut(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` (a client's value as a detail spells it) cut to ``limit`` characters, saying so."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [cut: {len(text)} characters]"


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """A client's value quoted in an error detail (its repr), cut to ``limit`` characters."""
    return cut(repr(value), limit)


class TurnoutError(Exception):
    """Base error: ``code`` is machine-readable, ``detail`` says why."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class BadRequest(TurnoutError):
    status = 400
    code = "bad_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class InvalidEncoding(BadRequest):
    code = "invalid_encoding"


class Unauthorized(TurnoutError):
    status = 401
    code = "unauthorized"


class UntrustedHost(BadRequest):
    """The console or admin API asked for by a name not in ``TURNOUT_TRUSTED_HOSTS``."""

    code = "untrusted_host"


class Forbidden(TurnoutError):
    """A valid credential without the scope the action needs."""

    status = 403
    code = "forbidden"


class NotFound(TurnoutError):
    status = 404
    code = "not_found"


class Conflict(TurnoutError):
    status = 409
    code = "conflict"


class RequestTimeout(TurnoutError):
    """The request's body did not arrive within the body read timeout."""

    status = 408
    code = "request_timeout"


class ClientDisconnected(TurnoutError):
    """The client went away before its body was read whole: nobody reads the answer."""

    status = 499
    code = "client_disconnected"


class PayloadTooLarge(TurnoutError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(TurnoutError):
    status = 415
    code = "unsupported_media_type"


class InvalidInput(TurnoutError):
    status = 422
    code = "invalid_input"


class BadUpstreamAnswer(TurnoutError):
    """The control answered, but in a form its protocol adapter cannot decode."""

    status = 502
    code = "bad_upstream_answer"


class Unavailable(TurnoutError):
    status = 503
    code = "unavailable"


class ConfigError(TurnoutError):
    """A configuration file was refused; the detail names the file, the line and the reason."""

    code = "invalid_config"


class RegistryError(TurnoutError):
    """A model artifact or card is missing, malformed, or fails its integrity check."""

    code = "registry_error"


class DatasetError(TurnoutError):
    code = "dataset_error"


class RedisMisconfigured(TurnoutError):
    """Redis answered, but refuses this configuration (a wrong password, an unknown Sentinel
    master): retrying cannot help, so a process refuses to start on it."""

    code = "redis_misconfigured"
