"""Data-quality summary of canonical rows or an exported snapshot: degree distributions, sparsity,
cold users/items, text coverage; plus log-log degree histograms."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .records import GraphRecords
from .snapshot import Snapshot

logger = logging.getLogger(__name__)


def _degrees(data: GraphRecords | Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """Distinct interacted items per user and users per item (repeated events of a pair count once,
    as in the export; nodes without interactions count 0)."""
    if isinstance(data, Snapshot):
        n_u, n_i = data.num_users, data.num_items
        users = np.concatenate([s.user for s in data.splits.values()] or [np.zeros(0, np.int64)]).astype(np.int64)
        items = np.concatenate([s.item for s in data.splits.values()] or [np.zeros(0, np.int64)]).astype(np.int64)
        pairs = np.unique(users * max(n_i, 1) + items)  # a pair in two splits, or twice (a LightGCN file's): once
        return np.bincount(pairs // max(n_i, 1), minlength=n_u), np.bincount(pairs % max(n_i, 1), minlength=n_i)
    pairs = {(r["user"], r["item"]) for r in data.interactions}
    u_count = Counter(u for u, _ in pairs)
    i_count = Counter(i for _, i in pairs)
    user_ids = {r["id"] for r in data.users} | set(u_count)
    item_ids = {r["id"] for r in data.items} | set(i_count)
    return (np.fromiter((u_count.get(u, 0) for u in user_ids), np.int64, len(user_ids)),
            np.fromiter((i_count.get(i, 0) for i in item_ids), np.int64, len(item_ids)))


def _record_relations(data: GraphRecords) -> dict[str, int]:
    """Edge counts per relation, named as the export names them (``cypher/export/edges.cypher``) and
    counted as it keeps them: a pair linked twice (a query searched at two times) is one edge."""
    edges = {(f"has:{r['relation']}", r["item"], r["entity"]) for r in data.item_entities}
    edges |= {(f"user:{r['relation']}", r["user"], r["entity"]) for r in data.user_entities}
    edges |= {(f"kg:{r['relation']}", r["head"], r["tail"]) for r in data.triples}
    edges |= {("friend", r["user"], r["friend"]) for r in data.friends}
    edges |= {("searched", r["user"], r["query"]) for r in data.user_queries}
    edges |= {("relevant", r["query"], r["item"]) for r in data.query_items}
    return dict(Counter(name for name, _, _ in edges))


def _stats(deg: np.ndarray) -> dict[str, float]:
    if deg.size == 0:
        return {"min": 0, "max": 0, "mean": 0.0, "median": 0.0, "p90": 0.0, "zero": 0}
    return {"min": int(deg.min()), "max": int(deg.max()), "mean": float(deg.mean()),
            "median": float(np.median(deg)), "p90": float(np.percentile(deg, 90)), "zero": int((deg == 0).sum())}


def _gini(deg: np.ndarray) -> float:
    """Gini coefficient of a degree distribution (0 = even, 1 = one node takes everything)."""
    if deg.size == 0 or deg.sum() == 0:
        return 0.0
    x = np.sort(deg.astype(np.float64))
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def quality_summary(data: GraphRecords | Snapshot, cold_threshold: int = 5) -> dict[str, Any]:
    """Summarise the quality of a graph's interaction data.

    Args:
        data: Canonical rows or a snapshot (all splits counted).
        cold_threshold: Users/items with fewer interactions than this are "cold".

    Returns:
        A JSON-friendly dict: node counts, interactions (distinct user-item pairs, as the export
        keeps them; ``events`` counts repeats too), density and sparsity, degree statistics of
        users and items (min/max/mean/median/p90/zero, item popularity Gini), cold counts and
        fractions, text coverage of items (non-empty title/description, over every item the data
        names: one only an event names has no text in it), entity types and relation counts.
    """
    u_deg, i_deg = _degrees(data)
    n_u, n_i = int(u_deg.size), int(i_deg.size)
    n_inter = int(u_deg.sum())
    if isinstance(data, Snapshot):
        n_events = int(data.meta.get("raw_events", n_inter))  # before repeats of a pair were collapsed
        titles = list(data.item_titles)
        descriptions = list(data.item_descriptions)
        entity_types = dict(Counter(data.entity_types))
        relations = {r: int(e.shape[1]) for r, e in data.relations.items()}
    else:
        n_events = len(data.interactions)
        titles = [r.get("title") or "" for r in data.items]
        descriptions = [r.get("description") or "" for r in data.items]
        entity_types = dict(Counter(r["type"] for r in data.entities))
        relations = _record_relations(data)
    pairs = n_u * n_i
    density = n_inter / pairs if pairs else 0.0
    n_titles = max(n_i, len(titles))  # items only an event names count, without text (ingest makes them bare)
    return {
        "users": n_u, "items": n_i, "interactions": n_inter, "events": n_events,
        "density": density, "sparsity": 1.0 - density if pairs else 1.0,
        "user_degree": _stats(u_deg), "item_degree": {**_stats(i_deg), "gini": _gini(i_deg)},
        "cold_threshold": cold_threshold,
        "cold_users": int((u_deg < cold_threshold).sum()), "cold_items": int((i_deg < cold_threshold).sum()),
        "cold_user_fraction": float((u_deg < cold_threshold).mean()) if n_u else 0.0,
        "cold_item_fraction": float((i_deg < cold_threshold).mean()) if n_i else 0.0,
        "text_coverage": {
            "title": sum(1 for t in titles if t.strip()) / n_titles if n_titles else 0.0,
            "description": sum(1 for t in descriptions if t.strip()) / n_titles if n_titles else 0.0,
            "any": sum(1 for t, d in zip(titles, descriptions) if t.strip() or d.strip()) / n_titles
            if n_titles else 0.0,
        },
        "entity_types": entity_types,
        "relations": relations,
    }


def plot_degree_histograms(data: GraphRecords | Snapshot, path: str | Path, title: str | None = None) -> Path:
    """Save log-log histograms of user and item degrees (number of nodes per degree).

    Args:
        data: Canonical rows or a snapshot.
        path: Image path (format from the suffix, e.g. ``.png``); parent directories are created.
        title: Figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure  # not pyplot: no backend chosen for the whole process
    from matplotlib.ticker import NullFormatter

    u_deg, i_deg = _degrees(data)
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, deg, name in ((axes[0], u_deg, "users"), (axes[1], i_deg, "items")):
        positive = deg[deg > 0]
        if positive.size:
            values, counts = np.unique(positive, return_counts=True)
            ax.scatter(values, counts, s=6)
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):  # a narrow range labels its minor ticks, one over another
                axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("degree (interactions)")
        ax.set_ylabel(f"number of {name}")
        ax.set_title(f"{name}: {deg.size} ({int((deg == 0).sum())} with degree 0)")
    if title:
        fig.suptitle(title, parse_math=False)  # a source named sales$^$2024 is a name, not mathtext
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
