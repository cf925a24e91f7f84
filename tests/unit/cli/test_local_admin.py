"""The local stack's admin token: kept 0600 in the state folder, sent only to the gateway it was
made for, and never over a configured token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.admin.auth import AdminTokens
from router.cli import app
from router.cli.client import GatewayClient
from router.core.settings import Settings
from router.core.state import (
    LOCAL_ADMIN,
    StackInfo,
    StateFolder,
    admin_tokens_configured,
    join_local_stack,
)
from router.local.processes import free_port
from router.local.redis_server import EmbeddedRedis

runner = CliRunner()
URL = "http://127.0.0.1:8000"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateFolder:
    for name in ("TURNOUT_ADMIN_TOKEN", "TURNOUT_ADMIN_URL", "TURNOUT_HOST", "TURNOUT_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TURNOUT_STATE_DIR", str(tmp_path / "state"))
    return StateFolder(tmp_path / "state")


def test_the_token_is_random_private_and_cleared(state: StateFolder) -> None:
    first = state.make_admin_token(URL + "/")
    assert stat.S_IMODE(state.admin_token_file.stat().st_mode) == 0o600
    assert state.read_admin_token() == first
    assert first.gateway_url == URL and len(first.token) >= 32
    assert first.token not in repr(first)
    second = state.make_admin_token(URL)
    assert second.token != first.token  # a new one each run
    state.clear_admin_token()
    assert state.read_admin_token() is None
    state.clear_admin_token()  # nothing to clear: no error


def test_a_damaged_token_file_is_no_token(state: StateFolder) -> None:
    state.root.mkdir(parents=True)
    for content in (b"", b"not json", b'{"gateway_url": "http://x"}', b'["a"]'):
        state.admin_token_file.write_bytes(content)
        assert state.read_admin_token() is None


def test_the_cli_uses_it_for_the_local_gateway_only(state: StateFolder) -> None:
    made = state.make_admin_token(URL)
    assert GatewayClient(None, None, need_token=True).token == made.token
    assert GatewayClient(URL + "/", None).token == made.token
    assert GatewayClient("http://127.0.0.1:9000", None).token is None
    assert GatewayClient("https://gateway.example", None).token is None


def test_a_configured_token_always_wins(
    state: StateFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.make_admin_token(URL)
    assert GatewayClient(None, "from-the-flag").token == "from-the-flag"
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", "from-the-environment")
    assert GatewayClient(None, None).token == "from-the-environment"
    assert GatewayClient(None, "from-the-flag").token == "from-the-flag"


def test_without_any_token_the_reason_names_the_ways_out(state: StateFolder) -> None:
    result = runner.invoke(app, ["flags", "set", "exp", "kill_switch", "true"])
    assert result.exit_code == 2
    assert "no admin token" in result.output and "turnout up" in result.output


def test_gateway_tokens_count_as_configured() -> None:
    assert not admin_tokens_configured(Settings(admin_tokens={}, admin_tokens_file=None))
    assert admin_tokens_configured(Settings(admin_tokens={"ops": "t"}))
    assert admin_tokens_configured(Settings(admin_tokens_file=Path("tokens.yaml")))


def test_a_replica_joining_the_stack_accepts_its_token_unless_tokens_are_configured(
    state: StateFolder, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    try:
        state.write_stack(StackInfo(server.url, 1))
        made = state.make_admin_token(URL)
        settings = Settings(state_dir=state.root, redis_url=None, admin_tokens={})
        joined = join_local_stack(settings)
        assert joined.redis_url == server.url
        assert AdminTokens.from_settings(joined).check(made.token) == LOCAL_ADMIN
        configured = Settings(state_dir=state.root, redis_url=None, admin_tokens={"ops": "t0k3n"})
        assert join_local_stack(configured).admin_tokens.keys() == {"ops"}
    finally:
        server.stop()
