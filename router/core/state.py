"""The state folder (``TURNOUT_STATE_DIR``, ``.turnout/`` by default): what a local stack keeps
between runs and tells the processes it did not start itself.

====================  ==========================================================================
path                  holds
====================  ==========================================================================
``stack.json``        written by ``turnout up`` while it runs: the Redis URL (and the stack's
                      pid), so ``turnout gateway`` joins the same Redis instead of running
                      without one; removed when the stack stops
``salt``              the user-hash salt ``turnout up`` generated (random, mode 0600), kept
                      across runs so users keep their hashes; every replica of the stack uses it
``feedback-secret``   the feedback tokens' key ``turnout up`` generated (random, mode 0600), kept
                      across runs so tokens handed out stay valid; every replica uses it
``admin-token``       the local admin token ``turnout up`` made when none is configured (random,
                      new each run, mode 0600) and the gateway URL it is for: the CLI sends it
                      to that gateway only; removed when the stack stops
``last-good/``        the last version of each experiment file that loaded (one folder per
                      experiments folder), served by a fresh gateway when the file is refused
``flags.json``        the last flag overrides a gateway saw, with the Redis (a hash of its URL)
                      and the epoch they belong to: restored if that Redis comes back without
                      its data
``redis/``            the embedded Redis's append-only file (fsync every second) and its log
``logs/``             one log file per process of the local stack
====================  ==========================================================================

Writes are atomic (a temporary file renamed over the old one) and, except for the salt and the
feedback secret, best effort: a read-only state folder costs these safety nets, never the
service.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from pydantic import SecretStr

from router.core import logs
from router.core.errors import ConfigError
from router.core.settings import Settings

log = logging.getLogger("turnout.state")

DEFAULT_SALT = "turnout"
"""The public default of ``TURNOUT_USER_HASH_SALT``: it protects nothing."""


@dataclass(frozen=True)
class StackInfo:
    redis_url: str
    pid: int


LOCAL_ADMIN = "local"
"""The name of the local stack's admin token: what the audit trail records as the actor."""


@dataclass(frozen=True)
class LocalAdmin:
    """The admin token ``turnout up`` made, and the gateway that accepts it."""

    gateway_url: str
    token: str

    def __repr__(self) -> str:  # never the token, whatever prints this
        return f"LocalAdmin(gateway_url={self.gateway_url!r})"


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StateFolder:
    """One state folder; every method tolerates a folder that does not exist yet."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # --- the running stack --------------------------------------------------------------
    @property
    def stack_file(self) -> Path:
        return self.root / "stack.json"

    def write_stack(self, info: StackInfo) -> None:
        write_atomically(self.stack_file, orjson.dumps(info.__dict__))

    def read_stack(self) -> StackInfo | None:
        data = self._read_json(self.stack_file)
        if not isinstance(data, dict) or not isinstance(data.get("redis_url"), str):
            return None
        return StackInfo(data["redis_url"], int(data.get("pid", 0)))

    def clear_stack(self) -> None:
        self.stack_file.unlink(missing_ok=True)

    # --- the user-hash salt -------------------------------------------------------------
    @property
    def salt_file(self) -> Path:
        return self.root / "salt"

    def read_salt(self) -> str | None:
        try:
            salt = self.salt_file.read_text().strip()
        except OSError:
            return None
        return salt or None

    def make_salt(self) -> str:
        """The stack's salt: the one kept here, else a new random one (kept from now on)."""
        return self._kept_secret(self.salt_file)

    @property
    def feedback_secret_file(self) -> Path:
        return self.root / "feedback-secret"

    def make_feedback_secret(self) -> str:
        """The stack's TURNOUT_FEEDBACK_SECRET, kept like the salt: feedback tokens handed out
        before a restart stay valid after it."""
        return self._kept_secret(self.feedback_secret_file)

    def _kept_secret(self, path: Path) -> str:
        try:
            kept = path.read_text().strip()
        except OSError:
            kept = ""
        if not kept:
            kept = secrets.token_hex(32)
            write_atomically(path, kept.encode(), mode=0o600)
        return kept

    # --- the local admin token --------------------------------------------------------
    @property
    def admin_token_file(self) -> Path:
        return self.root / "admin-token"

    def make_admin_token(self, gateway_url: str) -> LocalAdmin:
        """A new random admin token for the stack's gateway at ``gateway_url``, kept (mode
        0600) until ``clear_admin_token``."""
        admin = LocalAdmin(gateway_url.rstrip("/"), secrets.token_urlsafe(32))
        data = orjson.dumps({"gateway_url": admin.gateway_url, "token": admin.token})
        write_atomically(self.admin_token_file, data, mode=0o600)
        return admin

    def read_admin_token(self) -> LocalAdmin | None:
        data = self._read_json(self.admin_token_file)
        if not isinstance(data, dict):
            return None
        url, token = data.get("gateway_url"), data.get("token")
        if not isinstance(url, str) or not isinstance(token, str) or not token:
            return None
        return LocalAdmin(url, token)

    def clear_admin_token(self) -> None:
        self.admin_token_file.unlink(missing_ok=True)

    # --- last good experiment files -----------------------------------------------------
    def last_good_dir(self, experiments_dir: Path) -> Path:
        folder = str(experiments_dir.resolve()).encode()
        return self.root / "last-good" / hashlib.sha256(folder).hexdigest()[:16]

    def save_last_good(self, experiments_dir: Path, name: str, content: str) -> None:
        self._best_effort(
            "save_last_good",
            lambda: write_atomically(self.last_good_dir(experiments_dir) / name, content.encode()),
        )

    def last_good(self, experiments_dir: Path, name: str) -> str | None:
        try:
            return (self.last_good_dir(experiments_dir) / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def forget_last_good(self, experiments_dir: Path, name: str) -> None:
        self._best_effort(
            "forget_last_good",
            lambda: (self.last_good_dir(experiments_dir) / name).unlink(missing_ok=True),
        )

    # --- flags ------------------------------------------------------------------------------
    @property
    def flags_file(self) -> Path:
        return self.root / "flags.json"

    def save_flags(self, redis_url: str, epoch: str, overrides: dict[str, dict[str, Any]]) -> None:
        """The last known overrides of the dataset ``epoch`` of the Redis at ``redis_url``
        (kept as a hash: a URL may hold a password)."""
        data = orjson.dumps({"redis": _url_key(redis_url), "epoch": epoch, "overrides": overrides})
        self._best_effort("save_flags", lambda: write_atomically(self.flags_file, data))

    def read_flags(self, redis_url: str) -> tuple[str, dict[str, dict[str, Any]]] | None:
        """What ``save_flags`` kept for this Redis; None for another Redis, or none kept."""
        data = self._read_json(self.flags_file)
        if not isinstance(data, dict) or not isinstance(data.get("overrides"), dict):
            return None
        if data.get("redis") != _url_key(redis_url):
            return None
        return str(data.get("epoch", "")), data["overrides"]

    # --- helpers ------------------------------------------------------------------------
    def _read_json(self, path: Path) -> Any:
        try:
            return orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def _best_effort(self, what: str, action: Any) -> None:
        try:
            action()
        except OSError as exc:
            logs.event(log, "state_write_failed", logging.WARNING, what=what, reason=str(exc))


def _url_key(redis_url: str) -> str:
    return hashlib.sha256(redis_url.encode()).hexdigest()[:16]


def admin_tokens_configured(settings: Settings) -> bool:
    """Whether the gateway's admin tokens were configured: those always win over a local one."""
    return bool(settings.admin_tokens) or settings.admin_tokens_file is not None


def join_local_stack(settings: Settings) -> Settings:
    """A replica's settings: with no Redis configured, the Redis (and salt) of the local stack
    that runs in the state folder; with none running, a refusal naming the ways out. Never a
    gateway that silently records nothing."""
    configured = settings.redis_url or settings.redis_sentinels or settings.redis_cluster_nodes
    if configured or settings.no_redis:
        return settings
    state = StateFolder(settings.state_dir)
    stack = state.read_stack()
    if stack is None:
        raise ConfigError(
            f"no Redis: TURNOUT_REDIS_URL is not set and no local stack runs in "
            f"{settings.state_dir} (start one with `turnout up`, point TURNOUT_STATE_DIR at "
            "its folder, set TURNOUT_REDIS_URL, or set TURNOUT_NO_REDIS=true to run without "
            "recording, flags or feedback)"
        )
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigError(
            f"the local stack's Redis at {stack.redis_url} (from {state.stack_file}) does not "
            f"answer ({type(exc).__name__}): is `turnout up` still running?"
        ) from None
    finally:
        client.close()
    update: dict[str, Any] = {"redis_url": stack.redis_url}
    salt = state.read_salt()
    if salt is not None and "user_hash_salt" not in settings.model_fields_set:
        update["user_hash_salt"] = salt  # the same users must hash the same on every replica
    secret = state.feedback_secret_file
    if secret.is_file() and "feedback_secret" not in settings.model_fields_set:
        # Feedback tokens one replica makes, every replica must check.
        update["feedback_secret"] = SecretStr(state.make_feedback_secret())
    admin = state.read_admin_token()
    if admin is not None and not admin_tokens_configured(settings):
        update["admin_tokens"] = {LOCAL_ADMIN: SecretStr(admin.token)}  # as the stack's gateway
    logs.event(log, "joined_local_stack", redis_url=stack.redis_url, state_dir=str(state.root))
    return settings.model_copy(update=update)
