"""``turnout migrate-keys``: the one-off move of Redis data into the Cluster-ready key layout.

It talks to Redis, not to a gateway: it is run once, by an operator, against the Redis the
settings name (``TURNOUT_REDIS_URL`` or Sentinel). A dry run first, always.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from router.cli.common import JsonOption, console, fail, load_settings, print_json

app = typer.Typer()


@app.command("migrate-keys")
def migrate_keys(
    apply: Annotated[
        bool, typer.Option("--apply", help="Move the keys (without it: a dry run).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Move keys written before the Cluster-ready layout into it (dry run unless --apply).

    Idempotent: counters are kept (summed into what the new layout already holds), and a
    second run finds nothing to do.
    """
    from router.storage.client import connect, describe, redis_configured, topology
    from router.storage.migrate import apply as apply_moves
    from router.storage.migrate import plan

    settings = load_settings()
    if not redis_configured(settings):
        raise fail("no Redis configured: set TURNOUT_REDIS_URL (or the Sentinel settings)", 2)
    if topology(settings) == "cluster":
        raise fail(
            "migrate-keys runs on the single Redis (or Sentinel primary) that holds the old "
            "layout; the old layout never ran on a Cluster",
            2,
        )

    async def run() -> dict[str, object]:
        client = connect(settings, "turnout-migrate")
        try:
            found = await plan(client)
            summary: dict[str, object] = {
                "redis": describe(settings),
                "dry_run": not apply,
                "to_move": found.counts(),
                "merging": found.conflicts,
                "skipped": len(found.skipped),
            }
            if apply:
                summary["done"] = await apply_moves(client, found.moves)
            return summary
        finally:
            await client.aclose()

    try:
        summary = asyncio.run(run())
    except OSError as exc:
        raise fail(f"{describe(settings)} is unreachable: {exc}") from None
    except Exception as exc:  # a Redis error: say it in one line
        from redis.exceptions import RedisError

        if isinstance(exc, RedisError):
            raise fail(f"{describe(settings)}: {type(exc).__name__}: {exc}") from None
        raise
    if as_json:
        print_json(summary)
        return
    moves = summary["to_move"]
    assert isinstance(moves, dict)
    console.print(
        f"{summary['redis']}: {sum(moves.values())} keys in the old layout", highlight=False
    )
    for kind, count in sorted(moves.items()):
        console.print(f"  {kind:<14} {count}", highlight=False)
    console.print(f"  of which merge into existing keys: {summary['merging']}", highlight=False)
    if summary["skipped"]:
        console.print(f"  skipped (no experiment named): {summary['skipped']}", highlight=False)
    if apply:
        console.print(f"done: {summary['done']}", highlight=False)
    elif moves:
        console.print("dry run: nothing was changed; run again with --apply", highlight=False)
    else:
        console.print("nothing to do", highlight=False)
