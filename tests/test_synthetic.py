"""The synthetic generator the demo and the core tests rely on: its planted structure, seeds and limits."""
from __future__ import annotations

from collections import Counter

import pytest

from kg.synthetic import MIN_EVENTS, SyntheticSpec, community_of_item, community_of_user, generate


def test_a_seed_gives_the_same_rows_and_another_seed_other_ones():
    assert generate(SyntheticSpec(seed=3)) == generate(SyntheticSpec(seed=3))
    assert generate(SyntheticSpec(seed=3)).interactions != generate(SyntheticSpec(seed=4)).interactions


def test_users_mostly_pick_their_own_communitys_items_and_queries_point_into_theirs():
    spec = SyntheticSpec()
    rec = generate(spec)
    pairs = {(r["user"], r["item"]) for r in rec.interactions}
    assert len(pairs) == len(rec.interactions)  # a pair is drawn once
    own = sum(community_of_user(u, spec) == community_of_item(i, spec) for u, i in pairs) / len(pairs)
    assert own > 0.85  # affinity 0.9, plus the 1/c of other draws that land home, less repeats removed
    per_user = Counter(u for u, _ in pairs)
    assert len(per_user) == spec.num_users and min(per_user.values()) >= 3
    for q in rec.query_items:
        assert int(q["query"][1:]) % spec.num_communities == community_of_item(q["item"], spec)
    for s in rec.user_queries:
        assert int(s["query"][1:]) % spec.num_communities == community_of_user(s["user"], spec)


def test_event_times_interleave_users_so_a_temporal_split_keeps_training_history():
    rec = generate(SyntheticSpec(num_users=60, num_items=40))
    times = sorted(rec.interactions, key=lambda r: r["ts"])
    latest = {r["user"] for r in times[-len(times) // 5:]}  # the newest fifth: a temporal test split
    earlier = {r["user"] for r in times[: -len(times) // 5]}
    assert latest <= earlier and len({r["ts"] for r in rec.interactions}) == len(rec.interactions)


@pytest.mark.parametrize("bad", [dict(num_communities=0), dict(num_items=3), dict(num_users=11),
                                 dict(interactions_per_user=MIN_EVENTS - 1), dict(affinity=1.5),
                                 dict(brands_per_community=0)])
def test_a_spec_that_cannot_hold_its_planted_structure_is_refused(bad):
    with pytest.raises(ValueError):
        SyntheticSpec(**bad)
