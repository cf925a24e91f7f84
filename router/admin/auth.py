"""Admin tokens: several named tokens, checked in constant time, never logged."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path

import yaml

from router.core.errors import ConfigError, Forbidden, Unauthorized
from router.core.settings import Settings


class AdminTokens:
    """Token name -> secret. Empty means the admin API is off (404), not open."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        bad = [name for name, token in tokens.items() if not name or not _usable(token)]
        if bad:
            raise ConfigError(
                f"admin tokens must be non-empty and without whitespace: {', '.join(bad)}"
            )
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._tokens]

    def identify(self, authorization: str | None) -> str | None:
        """The token's name for ``Authorization: Bearer <token>``, or None.

        Every configured token is compared, whatever matched, so the time taken does not
        say which one (or how much of one) was right.
        """
        if not authorization or not self._tokens:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        candidate = given.strip().encode()
        found: str | None = None
        for name, token in self._tokens:
            if hmac.compare_digest(candidate, token) and found is None:
                found = name
        return found

    def check(self, token: str) -> str | None:
        """The name of a bare token (as typed into the console), or None."""
        return self.identify(f"Bearer {token}") if _usable(token) else None

    def derived_key(self, name: str, purpose: str) -> bytes | None:
        """A key derived from the named token for one purpose (signing console sessions), so
        the token itself never leaves this class. None for an unknown name."""
        for known, token in self._tokens:
            if known == name:
                return hmac.new(token, f"turnout:{purpose}".encode(), "sha256").digest()
        return None

    def __repr__(self) -> str:
        return f"AdminTokens(names={self.names})"

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminTokens:
        inline = {name: t.get_secret_value() for name, t in settings.admin_tokens.items()}
        return cls.load(inline, settings.admin_tokens_file)

    @classmethod
    def load(cls, inline: Mapping[str, str], path: Path | None) -> AdminTokens:
        """Tokens from the setting and from a YAML or JSON file (name -> token)."""
        tokens = dict(inline)
        if path is not None:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: unreadable admin tokens file: {exc}") from None
            except yaml.YAMLError as exc:  # the message would quote the file: a secret
                mark = getattr(exc, "problem_mark", None)
                line = mark.line + 1 if mark is not None else "?"
                raise ConfigError(f"{path}:{line}: admin tokens file is not valid YAML") from None
            if data is None:
                data = {}
            if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()
            ):
                raise ConfigError(f"{path}: admin tokens file must map names to token strings")
            tokens.update(data)
        return cls(tokens)


class FeedbackSources:
    """Label sources' credentials for ``POST /feedback`` (``feedback.auth: token``): a scope of
    their own. They are no admin tokens, and an admin token is no feedback credential."""

    def __init__(self, sources: AdminTokens, admin: AdminTokens) -> None:
        self.sources = sources
        self.admin = admin

    @classmethod
    def from_settings(cls, settings: Settings, admin: AdminTokens) -> FeedbackSources:
        inline = {name: t.get_secret_value() for name, t in settings.feedback_tokens.items()}
        return cls(AdminTokens(inline), admin)

    def identify(self, authorization: str | None) -> str | None:
        """The label source's name, None without a credential; a wrong one is refused (401),
        an admin token too (403), whatever the experiment's mode: a bad credential is a bug
        its sender should hear about."""
        if authorization is None:
            return None
        name = self.sources.identify(authorization)
        if name is not None:
            return name
        if self.admin.identify(authorization) is not None:
            raise Forbidden(
                "an admin token has no feedback scope: a label source sends a feedback token "
                "(TURNOUT_FEEDBACK_TOKENS)",
                code="feedback_wrong_scope",
            )
        raise Unauthorized(
            "not a feedback token: Authorization: Bearer <one of TURNOUT_FEEDBACK_TOKENS>",
            code="feedback_credential_invalid",
        )


def _usable(token: str) -> bool:
    return bool(token) and not any(c.isspace() for c in token)
