"""The demo traffic's users look like production's: heavy-tailed and sticky-friendly."""

from __future__ import annotations

import random
from collections import Counter

from router.local.demo import HeavyTailedUsers


def test_a_few_users_send_a_large_share_and_the_draw_is_seeded() -> None:
    users = HeavyTailedUsers(random.Random(3))
    counts = Counter(users.pick()[0] for _ in range(50_000))
    top = sum(n for _, n in counts.most_common(20))  # the top 1% of 2,000 users
    assert top / 50_000 > 0.2
    assert len(counts) > 1_000  # and a long tail of light users
    a, b = HeavyTailedUsers(random.Random(9)), HeavyTailedUsers(random.Random(9))
    assert [a.pick() for _ in range(100)] == [b.pick() for _ in range(100)]


def test_each_user_has_its_own_feedback_share() -> None:
    users = HeavyTailedUsers(random.Random(4))
    shares = {user: share for user, share in (users.pick() for _ in range(5_000))}
    assert all(0.0 <= s <= 1.0 for s in shares.values())
    assert max(shares.values()) - min(shares.values()) > 0.3
