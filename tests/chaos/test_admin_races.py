"""Admin actions racing a hand edit (issue 24, finding 8): a promotion rewrites the file only if
it still holds what was read, so an editor's concurrent save is never overwritten."""

from __future__ import annotations

import asyncio
from pathlib import Path

from router.local.redis_server import EmbeddedRedis
from tests.admin_race import promote_races

TRIALS = 200


def test_promotions_racing_hand_edits_lose_none(
    tmp_path: Path, chaos_redis: EmbeddedRedis, workers: dict[str, str]
) -> None:
    tally = asyncio.run(promote_races(tmp_path / "experiments", chaos_redis, workers, TRIALS))
    print(
        f"\n[chaos] promote vs hand edit: {tally.lost} lost edits out of {tally.trials} "
        f"({tally.promoted} promoted, {tally.refused} refused as moved)"
    )
    assert tally.trials == TRIALS
    assert tally.lost == 0
    assert tally.promoted > 0 and tally.refused > 0, tally  # both sides of the race were run
