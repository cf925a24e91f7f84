"""The rollout simulation runs on the gates' current interfaces, and its window bookkeeping is
what the controller would have recorded."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import rollout_sim as sim
from router.reports.units import UnitSums


def test_incremental_user_sums_equal_the_sums_of_every_users_requests() -> None:
    population = sim.Population(np.random.default_rng(1), 1.2, sim.AA)
    window = sim.Window(0.25, iid=False, look=sim.LOOK)
    batches = [population.batch(k * sim.LOOK) for k in range(12)]
    for batch in batches:
        window.add(batch)
    arms, matured = window.look(12 * sim.LOOK)
    users = np.concatenate([b.users for b in batches])
    failed = np.concatenate([b.failed[0] for b in batches]).astype(np.float64)
    requests = np.bincount(users, minlength=sim.USERS)
    failures = np.bincount(users, weights=failed, minlength=sim.USERS)
    candidate = population.u < 0.25
    for name, on in (("v1", ~candidate), ("v2", candidate)):
        pairs = list(zip(requests[on].tolist(), failures[on].tolist(), strict=True))
        expected = UnitSums.of_units(pairs)
        got = arms[name].users
        assert got.units == expected.units
        for field in ("n", "y", "nn", "yy", "ny"):
            assert getattr(got, field) == pytest.approx(getattr(expected, field))
        assert arms[name].users_complete()
        assert arms[name].reward_users.n == arms[name].rewards(matured).n > 0


def test_with_one_request_per_user_both_analyses_decide_alike() -> None:
    per_request, per_user = sim.simulate(sim.BAD_ERRORS, None, np.random.default_rng(0))
    assert per_request == per_user
    assert per_user.rolled_back and per_user.candidate_users <= sim.USER_CAP


def test_a_real_srm_and_uneven_labels_are_seen_by_user() -> None:
    _, srm = sim.simulate(sim.SRM_5, 3.0, np.random.default_rng(0))
    assert srm.halted_users is not None and srm.halted_users <= sim.USER_CAP
    per_request, per_user = sim.simulate(sim.RARE_LABELS, 3.0, np.random.default_rng(0))
    assert per_user.held and not per_request.held
