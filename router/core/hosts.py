"""Which ``Host`` the operators' routes answer to (pure).

A DNS-rebinding page resolves its own name to 127.0.0.1 and then reads what a loopback gateway
answers, as the same origin. Its requests carry *its* name in ``Host``, so the console and the
admin API answer only to the names in ``TURNOUT_TRUSTED_HOSTS``.
"""

from __future__ import annotations

ANY = "*"
GUARDED_PREFIXES = ("/ui", "/admin")
"""Paths of the operators' routes; the public API (``/predict``, ``/v2/...``) answers any name."""


def host_name(header: str) -> str:
    """The name in a ``Host`` header: port stripped, IPv6 brackets off, lower case, no
    trailing dot (``LocalHost.:8000`` and ``localhost`` are one name)."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def trusted_names(entries: list[str]) -> frozenset[str]:
    """The setting's entries as names to compare (``[::1]`` and ``::1`` are one)."""
    return frozenset(host_name(entry) for entry in entries if entry.strip())


def is_trusted(header: str | None, trusted: frozenset[str]) -> bool:
    if ANY in trusted:
        return True
    return header is not None and host_name(header) in trusted


def is_guarded(path: str) -> bool:
    return any(path == prefix or path.startswith(f"{prefix}/") for prefix in GUARDED_PREFIXES)
