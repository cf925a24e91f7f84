"""What a gateway checks before it serves: that it records to Redis (or was told not to), and
that it does not hash user ids with the public default salt where that matters."""

from __future__ import annotations

import logging

from router.core import logs
from router.core.errors import ConfigError
from router.core.settings import Settings
from router.core.state import DEFAULT_SALT
from router.storage.client import redis_configured

log = logging.getLogger("turnout.gateway")


def check_startup(settings: Settings, has_recorder: bool) -> None:
    """Raise ``ConfigError`` for a gateway that must not start; warn about unsafe defaults."""
    if not redis_configured(settings) and not has_recorder:
        if not settings.no_redis:
            raise ConfigError(
                "no Redis configured: set TURNOUT_REDIS_URL (or the Sentinel or Cluster settings), "
                "start the gateway with "
                "`turnout gateway` next to a running `turnout up`, or set TURNOUT_NO_REDIS=true to "
                "run without recording, flags or feedback"
            )
        logs.event(
            log,
            "running_without_redis",
            logging.WARNING,
            detail="TURNOUT_NO_REDIS: nothing is recorded, flags come from the flags file only, "
            "feedback and reports answer 503",
        )
    if settings.user_hash_salt == DEFAULT_SALT:
        detail = (
            "TURNOUT_USER_HASH_SALT is the public default: stored user hashes can be reversed "
            "by hashing candidate ids; set a secret salt (turnout up makes one)"
        )
        if settings.environment == "production":
            raise ConfigError(f"refusing to start in production: {detail}")
        logs.event(log, "default_user_hash_salt", logging.WARNING, detail=detail)
