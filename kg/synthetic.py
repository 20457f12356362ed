"""Synthetic catalogue with planted structure, deterministic by seed.

Users belong to communities; each community has its own topic, category entity, brands and
vocabulary. Users interact mostly with items of their own community (``affinity``), with a
popularity skew; item titles, descriptions and queries use the community's words, so text
correlates with the collaborative structure. Tests can therefore assert that a user's
recommendations come from their own community.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .records import GraphRecords

TOPICS: dict[str, list[str]] = {
    "running": ["trail", "marathon", "sneaker", "stride", "pace", "sprint", "track", "cushioned"],
    "cooking": ["skillet", "spice", "knife", "recipe", "simmer", "broth", "grill", "saucepan"],
    "photography": ["lens", "camera", "tripod", "aperture", "shutter", "portrait", "zoom", "flash"],
    "gardening": ["seed", "compost", "trowel", "bloom", "soil", "planter", "pruning", "greenhouse"],
    "gaming": ["console", "controller", "quest", "arcade", "multiplayer", "joystick", "pixel", "headset"],
    "jazz": ["saxophone", "trumpet", "swing", "bebop", "vinyl", "improvisation", "quartet", "blues"],
    "hiking": ["backpack", "summit", "tent", "compass", "boots", "canteen", "ridge", "lantern"],
    "baking": ["flour", "sourdough", "oven", "whisk", "pastry", "yeast", "croissant", "icing"],
}
ADJECTIVES = ["classic", "compact", "deluxe", "lightweight", "pro", "vintage", "smart", "rugged",
              "premium", "essential", "modern", "handmade"]


# draws per user at least, so users have events to train on and to hold out; repeated pairs are
# dropped after the draw, so on a catalogue of a few items per community a user can keep fewer
MIN_EVENTS = 5


@dataclass
class SyntheticSpec:
    """Sizes and strengths of the planted structure."""

    num_users: int = 600
    num_items: int = 400
    num_communities: int = 4
    interactions_per_user: int = 25  # the mean of a Poisson draw per user; every user gets at least MIN_EVENTS
    affinity: float = 0.9
    brands_per_community: int = 3
    num_queries: int = 80
    seed: int = 7

    def __post_init__(self) -> None:
        c = self.num_communities
        if not 1 <= c <= len(TOPICS):
            raise ValueError(f"num_communities must be 1..{len(TOPICS)} (one topic each), got {c}")
        if self.num_items < c:
            raise ValueError(f"need at least one item per community: num_items >= {c}, got {self.num_items}")
        if self.num_users < 3 * c:  # each query is searched by three users of its community
            raise ValueError(f"need at least three users per community: num_users >= {3 * c}, got {self.num_users}")
        if self.brands_per_community < 1 or self.interactions_per_user < MIN_EVENTS or not 0 <= self.affinity <= 1:
            raise ValueError(f"brands_per_community must be >= 1, interactions_per_user >= {MIN_EVENTS} (each user "
                             f"draws at least that many events) and affinity in [0, 1]")


def dataset_name(spec: SyntheticSpec) -> str:
    """The dataset ``spec`` generates, as a graph records it: ``synthetic``, and the settings that
    differ from the defaults (``synthetic:num_users=200,seed=3``)."""
    changed = [f"{f.name}={getattr(spec, f.name)}" for f in dataclasses.fields(spec)
               if getattr(spec, f.name) != f.default]
    return ":".join(["synthetic", ",".join(changed)] if changed else ["synthetic"])


def community_of_user(user_id: str, spec: SyntheticSpec) -> int:
    """The planted community of a generated user id (``u<index>``)."""
    return int(user_id[1:]) % spec.num_communities


def community_of_item(item_id: str, spec: SyntheticSpec) -> int:
    """The planted community of a generated item id (``i<index>``)."""
    return int(item_id[1:]) % spec.num_communities


def generate(spec: SyntheticSpec | None = None) -> GraphRecords:
    """Generate users, items, queries, attributes and interactions with planted communities.

    Args:
        spec: sizes and seed (defaults: 600 users, 400 items, 4 communities, about 12.7k distinct
            events: each draw is in the user's own community with probability ``affinity``, else in
            a uniformly drawn one, their own included).

    Returns:
        Canonical rows ready for :func:`kg.ingest.ingest`.
    """
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    topics = list(TOPICS)[: spec.num_communities]
    c = spec.num_communities
    rec = GraphRecords()

    for k, topic in enumerate(topics):
        rec.entities.append({"id": f"cat:{topic}", "type": "category", "name": topic})
        for b in range(spec.brands_per_community):
            rec.entities.append({"id": f"brand:{topic}{b}", "type": "brand",
                                 "name": f"{topic.title()}Works {b}"})

    item_comm = np.arange(spec.num_items) % c
    for i in range(spec.num_items):
        k = int(item_comm[i])
        words = TOPICS[topics[k]]
        w = rng.choice(words, size=3, replace=False)
        adj = ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
        brand = f"brand:{topics[k]}{int(rng.integers(spec.brands_per_community))}"
        rec.items.append({"id": f"i{i}", "title": f"{adj.title()} {w[0]} {w[1]}",
                          "description": f"A {adj} {w[0]} for {topics[k]} fans, with {w[2]} and {w[1]}.",
                          "props": {}})
        rec.item_entities.append({"item": f"i{i}", "entity": f"cat:{topics[k]}", "relation": "category"})
        rec.item_entities.append({"item": f"i{i}", "entity": brand, "relation": "brand"})

    # Popularity skew inside each community: Zipf-like weights over its items.
    by_comm = [np.flatnonzero(item_comm == k) for k in range(c)]
    pop = [1.0 / np.arange(1, len(ix) + 1) ** 0.6 for ix in by_comm]
    pop = [p / p.sum() for p in pop]
    t0 = 1_700_000_000
    user_comm = np.arange(spec.num_users) % c
    rec.users = [{"id": f"u{u}", "props": {"segment": topics[int(user_comm[u])]}} for u in range(spec.num_users)]
    # Vectorised draw of every event: community (own with prob. affinity), then an item by popularity.
    counts = np.maximum(MIN_EVENTS, rng.poisson(spec.interactions_per_user, size=spec.num_users))
    ev_user = np.repeat(np.arange(spec.num_users), counts)
    own = rng.random(ev_user.size) < spec.affinity
    ev_comm = np.where(own, user_comm[ev_user], rng.integers(c, size=ev_user.size))
    ev_item = np.empty(ev_user.size, dtype=np.int64)
    for k in range(c):
        mask = ev_comm == k
        ev_item[mask] = by_comm[k][np.searchsorted(np.cumsum(pop[k]), rng.random(int(mask.sum())), side="right").clip(max=len(by_comm[k]) - 1)]
    keys, first = np.unique(ev_user * spec.num_items + ev_item, return_index=True)
    order = np.sort(first)  # keep draw order within a user
    ev_user, ev_item = ev_user[order], ev_item[order]
    purchase = rng.random(ev_user.size) < 0.2
    rank = np.arange(ev_user.size) - np.searchsorted(ev_user, ev_user)  # each event's place in its user's draws
    # a user's events in draw order, and users' events interleaved in time (round by round), so a
    # temporal split holds the latest events of users who have earlier ones, not whole users
    ts = t0 + (rank * spec.num_users + ev_user) * 10
    rec.interactions = [
        {"user": f"u{u}", "item": f"i{i}", "kind": "purchase" if p else "click",
         "weight": 2.0 if p else 1.0, "ts": int(t), "split": ""}
        for u, i, p, t in zip(ev_user.tolist(), ev_item.tolist(), purchase.tolist(), ts.tolist())]
    for q in range(spec.num_queries):
        k = q % c
        words = rng.choice(TOPICS[topics[k]], size=2, replace=False)
        rec.queries.append({"id": f"q{q}", "text": f"{words[0]} {words[1]}"})
        for i in rng.choice(by_comm[k], size=min(5, len(by_comm[k])), replace=False):
            rec.query_items.append({"query": f"q{q}", "item": f"i{int(i)}", "relevance": float(rng.integers(1, 4))})
        for u in rng.choice(np.arange(k, spec.num_users, c), size=3, replace=False):
            rec.user_queries.append({"user": f"u{int(u)}", "query": f"q{q}", "ts": t0 + q})
    return rec
