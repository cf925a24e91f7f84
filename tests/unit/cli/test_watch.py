"""``turnout report NAME --watch``: each refresh redraws the view in place."""

from __future__ import annotations

import io

from rich.console import Console, RenderableType
from rich.text import Text

from router.cli.client import GatewayError
from router.cli.reports import watch_in_place


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=60, color_system=None), out


def test_each_refresh_redraws_in_place() -> None:
    frames = iter(["requests 10\nshare 0.90", "requests 25\nshare 0.88", "requests 40\nshare 0.91"])
    console, out = terminal()
    waits: list[float] = []
    watch_in_place(console, lambda: Text(next(frames)), 1.5, count=3, sleep=waits.append)
    text = out.getvalue()
    assert waits == [1.5, 1.5]
    for n in ("requests 10", "requests 25", "requests 40"):
        assert n in text
    # every redraw moves the cursor back up over the previous frame and clears it
    assert text.count("\x1b[1A") >= 2 * 3
    assert "\x1b[2K" in text
    assert "every 1.5 s" in text


def test_a_failed_refresh_keeps_the_last_view_and_says_why() -> None:
    def view() -> RenderableType:
        calls.append(1)
        if len(calls) == 2:
            raise GatewayError("cannot reach the gateway at http://127.0.0.1:1")
        return Text(f"requests {10 * len(calls)}")

    calls: list[int] = []
    console, out = terminal()
    watch_in_place(console, view, 0.5, count=3, sleep=lambda _: None)
    text = out.getvalue()
    assert "not updated at" in text
    assert "cannot reach the gateway" in text
    assert "requests 30" in text


def test_ctrl_c_ends_quietly() -> None:
    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    console, out = terminal()
    watch_in_place(console, lambda: Text("requests 1"), 2.0, sleep=interrupted)
    assert "requests 1" in out.getvalue()
