"""Which Host the console and admin routes answer to (DNS rebinding)."""

from __future__ import annotations

import pytest

from router.core.hosts import host_name, is_guarded, is_trusted, trusted_names
from router.core.settings import Settings

DEFAULT = trusted_names(Settings().trusted_hosts)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("LocalHost.:8000", "localhost"),
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("gateway:8000", "gateway"),
    ],
)
def test_the_port_brackets_and_case_do_not_count(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize("header", ["localhost:8000", "127.0.0.1:1", "[::1]:8000", "LOCALHOST"])
def test_loopback_names_are_trusted_by_default(header: str) -> None:
    assert is_trusted(header, DEFAULT)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "127.0.0.2",
        "0.0.0.0:8000",
        "[::2]:8000",
    ],
)
def test_other_names_are_not(header: str | None) -> None:
    assert not is_trusted(header, DEFAULT)


def test_an_entry_in_brackets_or_with_a_port_is_the_same_name() -> None:
    trusted = trusted_names(["[::1]", "gateway:8000"])
    assert is_trusted("[::1]:9000", trusted) and is_trusted("gateway", trusted)


def test_a_star_accepts_any_name() -> None:
    assert is_trusted("evil.example", trusted_names(["*"]))
    assert is_trusted(None, trusted_names(["localhost", "*"]))


@pytest.mark.parametrize(
    ("path", "guarded"),
    [
        ("/ui", True),
        ("/ui/", True),
        ("/ui/static/console.js", True),
        ("/admin/flags", True),
        ("/admin", True),
        ("/uix", False),
        ("/administrator", False),
        ("/predict", False),
        ("/v2/models/m/infer", False),
        ("/feedback", False),
    ],
)
def test_only_the_operators_routes_are_guarded(path: str, guarded: bool) -> None:
    assert is_guarded(path) is guarded
