"""The write path: canonical rows -> Neo4j, in ``UNWIND`` batches that ``MERGE`` on the constraints.

Every batch is one managed transaction (retried on transient errors by the driver); every value
is a parameter. Running the same load twice changes nothing. With ``incremental=True`` only
interactions at or after the stored watermark, or without a timestamp (``ts`` 0: they cannot be
dated, and re-writing them merges), are written. Empty texts and placeholder nodes (created for an
unknown reference) never overwrite what the graph already holds.

Interactions, the bulk of any load, are deduplicated by (user, item, kind, ts) and sent one row
per user with parallel event lists. Users that have no interaction in the graph yet get their
events with ``CREATE``; users that have some get ``MERGE`` (which must look at their existing
relationships). Which is which is read just before writing, so a re-run or an incremental load
merges, and a first load never pays for the MERGE lookups. Two concurrent ingests of the same
new users could both take the CREATE path, so every ingest holds the graph's ingest lock
(:mod:`kg.lock`): a second one waits ``IngestConfig.lock_wait_s`` seconds, then fails with the
holder's name and nothing written.

The watermark is kept per feed: ``feed="clicks"`` and ``feed="orders"`` each skip only their own
old events; without a feed, loads share one watermark.

With ``IngestConfig.writers = P > 1`` interactions go through P concurrent writers that never
share a user or an item between running transactions (:mod:`kg.interaction_writer`).
"""
from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import fields, replace
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from kgrec.config import IngestConfig

from .connection import Graph, batches
from .errors import DatasetMixError
from .governance import EDGE_ENDPOINTS, INVISIBLE, normalize_id
from .interaction_writer import write_interactions
from .lock import INGEST_LOCK, Lease, graph_lock
from .records import GraphRecords

logger = logging.getLogger(__name__)

WATERMARK_KEY = "interactions.max_ts"
DATASET_PREFIX = "dataset:"  # KgrecMeta keys recording the datasets loaded (see check_dataset)
FUTURE_TOLERANCE_S = 86_400  # events dated further ahead than this do not move a feed's watermark

# Row kind -> statement, in dependency order (nodes before the relationships that MATCH them).
# the edge statements MATCH both ends, so they report how many rows they wrote (RETURN count(*))
COUNTED = frozenset({"user_queries", "query_items", "item_entities", "user_entities", "friends"})
STATEMENTS: dict[str, str] = {
    "users": "ingest/merge_users",
    "items": "ingest/merge_items",
    "queries": "ingest/merge_queries",
    "entities": "ingest/merge_entities",
    "interactions": "ingest/merge_interactions",  # see _write_interactions
    "user_queries": "ingest/merge_user_queries",
    "query_items": "ingest/merge_query_items",
    "item_entities": "ingest/merge_item_entities",
    "user_entities": "ingest/merge_user_entities",
    "triples": "ingest/merge_triples",
    "friends": "ingest/merge_friends",
}
assert list(STATEMENTS) == [f.name for f in fields(GraphRecords)]
UNLINKED = {"item_entities": "ingest/unlink_item_entities", "user_entities": "ingest/unlink_user_entities"}


def stated_attributes(rows: list[dict], owner: str) -> list[dict]:
    """``{owner: id, "relation": r, "entities": [...]}`` for each node and relation that a row marked
    ``stated`` (the node's own row in an items or users file) gives: every entity the load links it to
    under that relation, the ones to keep."""
    stated = {(r[owner], r["relation"]) for r in rows if r.get("stated")}
    kept: dict[tuple[str, str], list[str]] = {key: [] for key in sorted(stated)}
    for r in rows:
        if (r[owner], r["relation"]) in kept:
            kept[(r[owner], r["relation"])].append(r["entity"])
    return [{owner: node, "relation": relation, "entities": entities} for (node, relation), entities in kept.items()]


def event_key(row: dict) -> tuple[str, str, str, int]:
    """An interaction row's identity in the graph, ``(user, item, kind, ts)``, as ingest writes it."""
    return row["user"], row["item"], row.get("kind") or "interact", int(row.get("ts") or 0)


def _normalise_interactions(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        user, item, kind, ts = event_key(r)  # the defaults the skipped-event filter reads too
        out.append({"user": user, "item": item, "kind": kind, "ts": ts, "weight": float(r.get("weight", 1.0)),
                    "split": r.get("split") or ""})
    return out


def _write_interactions(graph: Graph, events: list[dict], cfg: IngestConfig, totals: dict[str, int],
                        progress: bool, lease: Lease) -> int:
    """CREATE the events of users without interactions, MERGE the others; returns events sent."""
    report = write_interactions(graph, events, cfg.writers, cfg.batch_size, progress, check=lease.check)
    totals["relationships_created"] += report["relationships_created"]
    totals["properties_set"] += report["properties_set"]
    if report["not_written"]:
        totals["not_written"]["interactions"] = report["not_written"]
    totals["resplit"] = report["resplit"]
    if report["resplit"]:
        logger.warning("%d event(s) were stored with another split and now have the one this load gives: a "
                       "model trained before may have trained on what is now a test event (retrain it)",
                       report["resplit"])
    logger.info("interactions: %d events of %d new users created, of %d known users merged (%d writers)",
                report["sent"], report["new_users"], report["known_users"], cfg.writers)
    return report["sent"]


def existing_ids(graph: Graph, kind: str, ids: list[str], batch_size: int = 10000) -> set[str]:
    """Which of ``ids`` the graph holds as nodes of ``kind`` (``users``, ``items``, ``entities``,
    ``queries``): the ``known`` lookup of :class:`kg.governance.Governor` for loads into this graph."""
    if kind not in ("users", "items", "entities", "queries"):
        raise ValueError(f"unknown node kind {kind!r}")
    found: set[str] = set()
    for batch in batches(ids, batch_size):
        found.update(r["id"] for r in graph.query(f"ingest/existing_{kind}", ids=batch))
    return found


def watermark_key(feed: str | None = None) -> str:
    """The ``KgrecMeta`` key of a feed's watermark (``None``: the watermark loads share by default)."""
    return WATERMARK_KEY if not feed else f"{WATERMARK_KEY}/{feed}"


def get_watermark(graph: Graph, feed: str | None = None) -> int | None:
    """The largest interaction timestamp ingested so far for ``feed`` (None before its first load)."""
    rows = graph.query("ingest/get_watermark", key=watermark_key(feed))
    return rows[0]["value"] if rows else None


def watermark_horizon() -> int:
    """The latest time a watermark may take: now plus :data:`FUTURE_TOLERANCE_S`."""
    return int(time.time()) + FUTURE_TOLERANCE_S


def watermark_of(timestamps: Iterable[int]) -> tuple[int | None, int]:
    """The watermark events of these ``timestamps`` set (the latest no later than
    :func:`watermark_horizon`: a mistyped year must not make every later event "older"; None for
    no dated events: ts 0 is an unknown time, sent again by every load, and would otherwise put the
    mark above events dated before 1970), and how many are later than that."""
    horizon, latest, future = watermark_horizon(), None, 0
    for ts in timestamps:
        if ts == 0:
            continue
        if ts > horizon:
            future += 1
        elif latest is None or ts > latest:
            latest = ts
    return latest, future


def reset_watermark(graph: Graph, feed: str | None, value: int | None, lock_wait_s: float = 0.0) -> None:
    """Set ``feed``'s watermark to ``value`` (seconds; lower than it is, too), or remove it
    (``None``), holding the ingest lock (``kgrec watermark``): after a load dated in the future
    before that was kept out of watermarks, say, or to have the next incremental load resend
    everything."""
    with graph_lock(graph, INGEST_LOCK, lock_wait_s):
        if value is None:
            graph.write("ingest/clear_watermark", key=watermark_key(feed))
        else:
            graph.write("ingest/force_watermark", key=watermark_key(feed), value=int(value))


def dataset_key(dataset: str) -> str:
    """The ``KgrecMeta`` key recording that ``dataset`` was loaded."""
    return DATASET_PREFIX + dataset


def check_dataset(graph: Graph, dataset: str, merge: bool = False) -> bool:
    """Refuse to load ``dataset`` into a graph holding data that no load of it recorded.

    Packaged and benchmark datasets number their users and items from their own files (ml-100k's
    item 50 is Star Wars, lastfm's artist 50 is someone else), and ingest MERGEs on those ids: loaded
    into one graph, two datasets would turn into one item with both datasets' events and the later
    title, without an error. A load of a named dataset therefore goes into an empty database, or
    one where that dataset was loaded before (a reload, an incremental load), unless ``merge``.

    Returns:
        Whether the graph holds data (no: its dataset records, if any, name nothing there).

    Raises:
        kg.errors.DatasetMixError: the graph holds other data and ``merge`` is off.
    """
    state = graph.query("ingest/datasets", prefix=DATASET_PREFIX)[0]
    if merge or not state["holds_data"] or dataset in state["datasets"]:
        return bool(state["holds_data"])
    others = state["datasets"]
    what = (f"the dataset{'s' if len(others) > 1 else ''} {', '.join(others)}" if others else
            "data that no recorded load of it wrote (your own sources, or a load from before kgrec recorded "
            "datasets)")
    raise DatasetMixError(
        f"the graph at {graph.where} holds {what}; loading {dataset} into it would merge their users and items "
        f"that share an id (one node with both datasets' events and the later one's title). Nothing was written. "
        f"Load it into an empty database (another [neo4j] database, home and ports, or NEO4J_URI), or pass "
        f"--merge if its ids are meant to name the same users and items.")


def ingest(graph: Graph, records: GraphRecords, cfg: IngestConfig, *,
           incremental: bool = False, progress: bool = True, feed: str | None = None,
           on_skipped: Callable[[list[dict], int], None] | None = None,
           lease: Lease | None = None, dataset: str | None = None, merge: bool = False) -> dict[str, Any]:
    """Write ``records`` to the graph, holding the graph's ingest lock (or the caller's ``lease``
    of it: the CLI takes the lock before governance looks up which ids the graph holds, so no
    ``forget-user`` can remove one between that look-up and the write).

    Args:
        graph: connected graph.
        records: canonical rows (already validated by kg.governance or a trusted generator).
        cfg: batch size, lock wait and policies.
        incremental: skip interactions dated before the feed's stored watermark (undated ones,
            ``ts`` 0, and those at the watermark are written: they merge with what is there).
        progress: show a tqdm bar per row kind.
        feed: whose watermark to read and advance (None: the shared one).
        on_skipped: called with the events ``incremental`` leaves out and the watermark they fall
            before (the CLI writes them beside the quarantine, so no row goes unaccounted).
        dataset: the dataset these rows are (``kgrec ingest lastfm``: ``"lastfm"``), checked with
            :func:`check_dataset` and recorded in the graph before anything is written; None (your
            own sources, which share your ids on purpose): neither.
        merge: load ``dataset`` even into a graph holding other data (and record it there).

    Returns:
        ``{"written": {kind: rows sent}, "skipped_old": n, "skipped_nodes": {kind: the user and item
        rows governance made up for skipped events only, not written}, "nodes_created": n,
        "relationships_created": n, "properties_set": n, "not_written": {kind: rows whose node was
        no longer in the graph}, "resplit": events stored with another non-empty split that now have
        the one this load gives (logged as a warning), "attributes_unlinked": stored attribute links
        that an item's or user's own row no longer gives (:func:`stated_attributes`), "feed": feed,
        "watermark": ts}``.

    Raises:
        kg.lock.LockedError: another ingest held the lock for ``cfg.lock_wait_s`` seconds.
        kg.errors.DatasetMixError: ``dataset`` into a graph of other data, without ``merge``.
        kg.lock.LockLostError: the lock was lost on the way (taken over after the database was
            unreachable for minutes, or removed by ``kgrec unlock --force``); the batches written so
            far stay, and the same load run again completes it.
    """
    if lease is not None:
        return _ingest_locked(graph, records, cfg, incremental, progress, feed, lease, on_skipped, dataset, merge)
    with graph_lock(graph, INGEST_LOCK, cfg.lock_wait_s) as held:  # which applies the schema first
        return _ingest_locked(graph, records, cfg, incremental, progress, feed, held, on_skipped, dataset, merge)


def _ingest_locked(graph: Graph, records: GraphRecords, cfg: IngestConfig, incremental: bool, progress: bool,
                   feed: str | None, lease: Lease,
                   on_skipped: Callable[[list[dict], int], None] | None = None,
                   dataset: str | None = None, merge: bool = False) -> dict[str, Any]:
    holds_data = (check_dataset(graph, dataset, merge) if dataset is not None
                  else graph.query("ingest/datasets", prefix=DATASET_PREFIX)[0]["holds_data"])
    # an empty graph's dataset records are stale (loads that wrote nothing, data deleted since): kept,
    # a reload of one of them would pass into the graph this load makes, a dataset's or your own rows'
    steps = [] if holds_data else [("ingest/clear_datasets", {"prefix": DATASET_PREFIX})]
    if dataset is not None:  # recorded before the first write: a load that fails half-way is rerun as a reload
        steps.append(("ingest/record_dataset", {"key": dataset_key(dataset)}))
    if steps:
        graph.write_all(steps, before=lease.check)
    interactions = _normalise_interactions(records.interactions)
    skipped, skipped_nodes = 0, {}
    if incremental:
        mark = get_watermark(graph, feed)
        if mark is not None:
            kept: list[dict] = []
            old: list[dict] = []
            for r in interactions:
                (kept if r["ts"] >= mark or r["ts"] == 0 else old).append(r)
            interactions, skipped = kept, len(old)
            if old:
                records, skipped_nodes = without_placeholders_of(records, old, kept)
            if old and on_skipped is not None:
                on_skipped(old, mark)
    totals: dict[str, Any] = {"nodes_created": 0, "relationships_created": 0, "properties_set": 0,
                              "not_written": {}, "resplit": 0, "attributes_unlinked": 0}
    written: dict[str, int] = {}
    for kind, statement in STATEMENTS.items():
        rows = interactions if kind == "interactions" else getattr(records, kind)
        if not rows:
            continue
        if kind == "interactions":
            written[kind] = _write_interactions(graph, rows, cfg, totals, progress, lease)  # after deduplication
            continue
        if kind in UNLINKED:  # a node's own row states its values: those it no longer has go first
            for batch in batches(stated_attributes(rows, kind.removesuffix("_entities")), cfg.batch_size):
                totals["attributes_unlinked"] += graph.write(UNLINKED[kind], before_=lease.check,
                                                             rows=batch).relationships_deleted
        bar = tqdm(total=len(rows), desc=f"ingest {kind}", unit="row", disable=not progress, leave=False)
        for batch in batches(rows, cfg.batch_size):
            if kind in COUNTED:  # the lease is checked before every attempt, a driver retry's too
                counters, matched = graph.write_counted(statement, before_=lease.check, rows=batch)
                if matched < len(batch):
                    totals["not_written"][kind] = totals["not_written"].get(kind, 0) + len(batch) - matched
            else:
                counters = graph.write(statement, before_=lease.check, rows=batch)
            totals["nodes_created"] += counters.nodes_created
            totals["relationships_created"] += counters.relationships_created
            totals["properties_set"] += counters.properties_set
            bar.update(len(batch))
        bar.close()
        written[kind] = len(rows)
    watermark, future = watermark_of(r["ts"] for r in interactions)
    if future:  # a mistyped year (2205 for 2025) must not make every later event "older"
        logger.warning("%d event(s) are dated more than a day ahead: loaded, but left out of the feed's "
                       "watermark", future)
    if watermark is not None:
        graph.write("ingest/set_watermark", before_=lease.check, key=watermark_key(feed), value=watermark)
    graph.write("ingest/count_write", before_=lease.check)  # the demo tells a graph written since its load
    if totals["not_written"]:  # governance saw their nodes in the load or the graph: one went away since
        logger.warning("rows not written because a node they name is not in the graph (removed during the load?): %s",
                       totals["not_written"])
    logger.info("ingested %s", written)
    return {"written": written, "skipped_old": skipped, "skipped_nodes": skipped_nodes, **totals,
            "feed": feed, "watermark": get_watermark(graph, feed)}


def without_placeholders_of(records: GraphRecords, skipped: list[dict],
                             kept: list[dict]) -> tuple[GraphRecords, dict[str, int]]:
    """``records`` less the user and item rows governance made up (``placeholder``) for events the
    watermark skips and for no row that stays: a skipped event creates nothing, as a quarantined
    one does not. Returns them and how many rows of each kind went."""
    named = {"users": {r["user"] for r in skipped}, "items": {r["item"] for r in skipped}}
    needed: dict[str, set[str]] = {"users": {r["user"] for r in kept}, "items": {r["item"] for r in kept}}
    for kind, ends in EDGE_ENDPOINTS.items():
        for row in getattr(records, kind) if kind != "interactions" else ():
            for key, node_kind in ends:
                if node_kind in needed:
                    needed[node_kind].add(row[key])
    changes: dict[str, list[dict]] = {}
    for kind, ids in named.items():
        rows = getattr(records, kind)
        left = [r for r in rows if not (r.get("placeholder") and r["id"] in ids and r["id"] not in needed[kind])]
        if len(left) < len(rows):
            changes[kind] = left
    return replace(records, **changes), {k: len(getattr(records, k)) - len(v) for k, v in changes.items()}


def forget_user(graph: Graph, user_id: str, lock_wait_s: float = 0.0) -> int:
    """Delete a user and all their events, searches and friendships, the queries only they
    searched (not one the data links to relevant items) and the attribute values only they hold
    (an entity linked to nothing else: a zip code), holding the ingest lock: under
    the id as ingest stores it and, for a user loaded before, under any id that is it with the
    invisible characters ingest now removes (one person to ingest today), whichever form is given.
    Returns how many nodes were deleted: the user's, and the queries and attribute values only
    they had (0: no such user)."""
    stored = normalize_id(user_id, "user id")  # as ingest stores it (a mapping's lowercase_ids aside)
    before = unicodedata.normalize("NFKC", str(user_id)).strip()  # as ingest stored it before invisible
    with graph_lock(graph, INGEST_LOCK, lock_wait_s):  # characters were removed from ids (2026-12-02)
        older = [r["id"] for r in graph.query("ingest/users_stored_as", id=stored,
                                              invisible=[chr(c) for c in INVISIBLE])]
        counters = graph.write("ingest/forget_user", ids=list(dict.fromkeys([stored, before, *older])))
        if counters.nodes_deleted:
            graph.write("ingest/count_write")  # a demo would otherwise bring the user back
    return counters.nodes_deleted


def graph_counts(graph: Graph) -> dict[str, int]:
    """Node counts per label and the relationship count."""
    return graph.query("ingest/counts")[0]
