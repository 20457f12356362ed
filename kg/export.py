"""Export: streamed reads of Neo4j into a versioned :class:`kg.snapshot.Snapshot` on disk.

The reads are separate transactions, so a load committing between them could leave the snapshot
with half of it (or an event whose user was not read yet): :func:`export_locked`, which ``kgrec
export`` and ``kgrec retrain`` use, holds the ingest lock (:func:`kg.lock.graph_lock`) around them.

Records are streamed (driver fetch size 10k) straight into compact arrays, so memory stays
bounded by the arrays themselves. Repeated events of a (user, item) pair collapse into one
training pair (weights summed, latest timestamp kept). The split is the given one when the
source carried it on every interaction (``split = "auto"``, the default, or ``"given"``), else
per-user random ratio, leave-one-out, or a global temporal cut. Ids are sorted, relations are sorted
by name and each relation's edges by (source, target), so the same graph always gives the same
snapshot.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import time
from array import array
from pathlib import Path

import numpy as np

from kgrec.config import ExportConfig

from .connection import Graph
from .errors import KgError
from .lock import INGEST_LOCK, graph_lock
from .snapshot import Interactions, Snapshot, rank_within_runs

logger = logging.getLogger(__name__)


def _ids(graph: Graph, name: str, label: str, *cols: str) -> tuple[list[str], dict[str, list]]:
    """The ids of one label's nodes (statement ``name``), sorted, and the ``cols`` in the same order.

    Raises:
        KgError: a node without a string id (written outside kgrec): it could be neither indexed
            nor sorted, and its events would fall out of step with the others.
    """
    rows = [(r["id"], *(r[c] for c in cols)) for r in graph.stream(name)]
    bad = [r[0] for r in rows if not isinstance(r[0], str)]
    if bad:
        raise KgError(f"{len(bad)} {label} node(s) have no string `id` (written outside kgrec? one has "
                      f"{bad[0]!r}): give each one (SET n.id = '...') or delete them; find them with "
                      f"MATCH (n:{label}) WHERE n.id IS NULL OR NOT n.id IS :: STRING RETURN n")
    rows.sort(key=lambda t: t[0])
    ids = [r[0] for r in rows]
    return ids, {c: [r[k + 1] for r in rows] for k, c in enumerate(cols)}


SPLITS = ("auto", "given", "ratio", "loo", "temporal")


def resolve_split(cfg: ExportConfig, given: np.ndarray | None) -> str:
    """The split :func:`split_interactions` applies: ``auto`` is ``given`` when every interaction
    carries the source's split, else ``ratio``; any other name is checked and kept.

    Raises:
        ValueError: an unknown split name, or valid/test ratios outside ``0 <= v, t`` and ``v + t < 1``.
    """
    check_export_config(cfg)
    if cfg.split == "auto":
        return "given" if given is not None and given.size and (given >= 0).all() else "ratio"
    return cfg.split


def check_export_config(cfg: ExportConfig) -> None:
    """Refuse ``[export]`` settings no split can use, before the graph is read.

    Raises:
        ValueError: an unknown split name, valid/test ratios outside ``0 <= v, t`` and ``v + t < 1``,
            or a seed that is not a whole number >= 0.
    """
    if cfg.split not in SPLITS:
        raise ValueError(f"unknown split {cfg.split!r}: use {', '.join(SPLITS)}")
    if not (0 <= cfg.valid_ratio and 0 <= cfg.test_ratio and cfg.valid_ratio + cfg.test_ratio < 1):
        raise ValueError(f"valid_ratio {cfg.valid_ratio} and test_ratio {cfg.test_ratio} must be >= 0 "
                         "and sum to less than 1")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, (int, np.integer)) or cfg.seed < 0:
        raise ValueError(f"export.seed must be a whole number >= 0, got {cfg.seed!r}")


def held_out_from(user: np.ndarray, ts: np.ndarray, codes: np.ndarray, split: str, num_users: int) -> np.ndarray | None:
    """Per user, the time from which their events are held out (valid or test) under a time-based
    split: a user's first held-out event under ``loo``, the global cut under ``temporal`` (the
    same for every user); None for the splits that do not go by time (``ratio``, ``given``).
    A user with nothing held out has no cut (the largest int64)."""
    if split not in ("loo", "temporal"):
        return None
    cut = np.full(num_users, np.iinfo(np.int64).max, dtype=np.int64)
    held = (codes > 0) & (ts != 0)
    if held.any():
        if split == "temporal":
            cut[:] = ts[held].min()
        else:
            np.minimum.at(cut, user[held], ts[held])
    return cut


def before_cut(user: np.ndarray, ts: np.ndarray, cut: np.ndarray | None) -> np.ndarray:
    """Which of these user-side edges (a search, at ``ts``) happened before their user's held-out
    events began (:func:`held_out_from`): a search made then would tell training what the held-out
    events are about. Edges of unknown time (ts 0) count as before, as such events stay in train."""
    if cut is None:
        return np.ones(len(user), dtype=bool)
    return (ts == 0) | (ts < cut[user])


def split_settings(split: str, cfg: ExportConfig) -> dict[str, float | int]:
    """The settings besides its name that shape a ``split`` (none for ``given``), as the snapshot's
    metadata records them."""
    if split == "ratio":
        return {"valid_ratio": cfg.valid_ratio, "test_ratio": cfg.test_ratio, "seed": cfg.seed}
    if split == "temporal":
        return {"valid_ratio": cfg.valid_ratio, "test_ratio": cfg.test_ratio}
    if split == "loo":
        return {"seed": cfg.seed}  # breaks ties of time
    return {}


def split_interactions(user: np.ndarray, item: np.ndarray, ts: np.ndarray, cfg: ExportConfig,
                       given: np.ndarray | None = None) -> np.ndarray:
    """Assign each interaction to a split: 0 train, 1 valid, 2 test.

    Args:
        user, item, ts: aligned arrays of unique (user, item) pairs.
        cfg: ``split`` is ``auto`` | ``given`` | ``ratio`` | ``loo`` | ``temporal`` (see
            :func:`resolve_split`); ratios for valid and test.
        given: the source's split codes (-1 where none), used by ``given`` (and ``auto``).

    ``ratio`` and ``loo`` work per user, and every user keeps at least one pair in train: under
    ``ratio`` a user with a single interaction keeps it there; ``loo`` holds out the last pair to
    test and the one before to valid only for users with at least 3, two of them dated, so users
    with 1 or 2 stay wholly in train, and so do events of unknown time (ts 0), as under
    ``temporal`` (pairs of the same time are ordered by a seeded draw, not by item id, which
    would hold out the same kind of item every time).
    ``temporal`` is one global cut: interactions ordered by time (ties by user, then item), the
    latest ``test_ratio`` of them to test and the ``valid_ratio`` before those to valid; events of
    unknown time (ts 0) stay in train and count for neither.

    Raises:
        ValueError: a bad split or ratios; ``given`` without a split on every interaction;
            ``temporal`` or ``loo`` when every interaction has the same timestamp (none recorded).
    """
    n = user.size
    split = resolve_split(cfg, given)
    if split == "given":
        if given is None or (given < 0).any():
            raise ValueError("split 'given' needs a split on every interaction (LightGCN/KGAT data)")
        return given.astype(np.int8)
    out = np.zeros(n, dtype=np.int8)
    if n == 0:
        return out
    if split in ("temporal", "loo") and n > 1 and (ts == ts[0]).all():
        raise ValueError(f"split {split!r} needs timestamps, but every interaction has ts {int(ts[0])}; use ratio")
    if split == "temporal":
        timed = np.flatnonzero(ts != 0)  # an event of unknown time (ts 0) stays in train
        t = timed.size
        order = timed[np.lexsort((item[timed], user[timed], ts[timed]))]  # by time; ties by user, then item
        n_test = int(np.floor(t * cfg.test_ratio + 0.5))
        n_valid = int(np.floor(t * cfg.valid_ratio + 0.5))
        out[order[t - n_test - n_valid:t - n_test]] = 1
        out[order[t - n_test:]] = 2
        return out
    rng = np.random.default_rng(cfg.seed)
    draw = rng.random(n)
    # loo: a user's undated events (ts 0) first, before dated ones of any time (1969's are negative)
    order = np.lexsort((draw, ts, ts != 0, user)) if split == "loo" else np.lexsort((draw, user))
    u_sorted = user[order]
    counts = np.unique(u_sorted, return_counts=True)[1]  # per user, in sorted order
    rank_from_end = np.repeat(counts, counts) - 1 - rank_within_runs(u_sorted)  # 0 = last of the user
    if split == "loo":  # the latest two of three or more, dated both (undated events, ts 0, stay in train)
        dated = np.add.reduceat((ts[order] != 0).astype(np.int64), np.r_[0, np.cumsum(counts)[:-1]])
        n_test = n_valid = ((counts >= 3) & (dated >= 2)).astype(np.int64)
    elif split == "ratio":
        n_test = np.floor(counts * cfg.test_ratio + 0.5).astype(np.int64)
        n_valid = np.floor(counts * cfg.valid_ratio + 0.5).astype(np.int64)
        n_test = np.minimum(n_test, counts - 1)  # every user keeps at least one training pair
        n_valid = np.minimum(n_valid, counts - 1 - n_test)
    else:  # pragma: no cover - resolve_split admits nothing else
        raise AssertionError(split)
    nt, nv = np.repeat(n_test, counts), np.repeat(n_valid, counts)
    codes = np.where(rank_from_end < nt, 2, np.where(rank_from_end < nt + nv, 1, 0)).astype(np.int8)
    out[order] = codes
    return out


def _canonical_edges(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, E) distinct edges sorted by (source, target): the snapshot does not depend on the order
    Neo4j happens to return them in (item texts list attributes in this order, too), and a pair
    linked twice (a query searched at two times) is one edge, as a pair's events are one interaction."""
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    return np.stack([src[first], dst[first]])


LEFTOVER_AGE_S = 86_400  # what a killed export left is swept once a day old: no export runs that long


def _stamped(name: str) -> str:
    """The pattern of the snapshot directory names :func:`_claim_snapshot_dir` gives exports of ``name``."""
    return re.escape(name) + r"-\d{8}-\d{6}(-\d+)?"


def sweep_killed_exports(out_dir: Path, name: str, max_age_s: float = LEFTOVER_AGE_S) -> list[Path]:
    """Remove what exports of ``name`` killed outright (SIGKILL, the OOM killer) left in ``out_dir``
    once it is ``max_age_s`` old: a save's hidden ``.<name>-<time>.<pid>-<hex>.tmp`` (or ``.old``)
    directory, a claimed ``<name>-<time>`` directory that was never written (empty), and a
    ``-latest`` link's temporary name. Returns what was removed."""
    stamp = _stamped(name)
    hidden = re.compile(r"\." + stamp + r"\.\d+-[0-9a-f]+\.(tmp|old)")
    claimed = re.compile(stamp)
    link = re.compile(r"\." + re.escape(name) + r"-latest\.\d+-[0-9a-f]+\.tmp")  # point_latest's, not renamed
    cutoff = time.time() - max_age_s
    removed = []
    for path in sorted(out_dir.iterdir()) if out_dir.is_dir() else []:
        try:
            if path.is_symlink():
                if link.fullmatch(path.name) and path.lstat().st_mtime <= cutoff:
                    path.unlink()
                    removed.append(path)
                continue
            if not path.is_dir() or path.stat().st_mtime > cutoff:
                continue
            if hidden.fullmatch(path.name):
                shutil.rmtree(path)
            elif claimed.fullmatch(path.name) and not any(path.iterdir()):
                path.rmdir()
            else:
                continue
        except OSError as e:  # another sweep got there first, or a permission: not the export's concern
            logger.warning("could not remove %s, left by a killed export: %s", path, e)
            continue
        removed.append(path)
    if removed:
        logger.info("removed %d leftovers of killed exports in %s", len(removed), out_dir)
    return removed


def _claim_snapshot_dir(out_dir: Path, stem: str) -> Path:
    """A new, empty ``out_dir/<stem>`` (``<stem>-2``, ``-3``… when an export in the same second has
    it), created atomically: a snapshot a model was trained on is never overwritten."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = out_dir / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free snapshot name for {out_dir / stem}")


def check_snapshot_name(name: str) -> str:
    """``name`` when it can name snapshots (``<name>-<time>``, ``<name>-latest``) in one directory.

    Raises:
        ValueError: empty, a path (``nightly/retrain``), or hidden (``.x``: temporary files' names).
    """
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name:
        raise ValueError(f"a snapshot name must be a file name, not starting with '.': got {name!r}")
    return name


def export_snapshot(graph: Graph, cfg: ExportConfig, name: str = "graph", link_latest: bool = True) -> Path:
    """Stage entry point: read the whole graph and write ``<out_dir>/<name>-<timestamp>/``.

    Returns:
        The snapshot directory (also pointed to by ``<out_dir>/<name>-latest`` unless
        ``link_latest`` is false: :func:`point_latest` does it later).

    Raises:
        ValueError: ``name`` names no snapshot (:func:`check_snapshot_name`), or settings no split
            can use (:func:`check_export_config`); nothing was read.
    """
    check_snapshot_name(name)
    check_export_config(cfg)
    started = time.perf_counter()
    users, _ = _ids(graph, "export/users", "User")
    items, item_cols = _ids(graph, "export/items", "Item", "title", "description")
    queries, query_cols = _ids(graph, "export/queries", "Query", "text")
    entities, ent_cols = _ids(graph, "export/entities", "Entity", "type", "name")
    index = {"user": {v: i for i, v in enumerate(users)}, "item": {v: i for i, v in enumerate(items)},
             "query": {v: i for i, v in enumerate(queries)}, "entity": {v: i for i, v in enumerate(entities)}}

    uidx, iidx = index["user"], index["item"]
    cols = {k: array("q") for k in ("user", "item", "ts", "kind", "split")}
    weights = array("d")
    kinds: dict[str, int] = {}
    split_code = {"train": 0, "valid": 1, "test": 2}
    for r in graph.stream("export/interactions"):
        items_ = r["items"]
        cols["user"].extend([uidx[r["user"]]] * len(items_))
        cols["item"].extend([iidx[x] for x in items_])
        cols["ts"].extend([int(t or 0) for t in r["ts"]])
        cols["kind"].extend([kinds.setdefault(k or "interact", len(kinds)) for k in r["kinds"]])
        cols["split"].extend([split_code.get(s or "", -1) for s in r["splits"]])
        weights.extend([1.0 if x is None else float(x) for x in r["weights"]])
    u = np.frombuffer(cols["user"], dtype=np.int64)
    i = np.frombuffer(cols["item"], dtype=np.int64)
    ts = np.frombuffer(cols["ts"], dtype=np.int64)
    names = sorted(kinds)  # kind codes by name, not by the order Neo4j streamed them in
    recode = np.zeros(max(1, len(kinds)), dtype=np.int64)
    recode[[kinds[k] for k in names]] = np.arange(len(names))
    kind = recode[np.frombuffer(cols["kind"], dtype=np.int64)]
    given = np.frombuffer(cols["split"], dtype=np.int64)
    w = np.frombuffer(weights, dtype=np.float64)

    # Collapse repeated events of a pair: summed weight, latest ts, kind of the latest event. Every
    # column is a sort key, so the events of a pair come in one order whatever order Neo4j streamed
    # them in: the same graph always gives the same snapshot (ties on ts broken by kind, then split).
    key = u * max(1, len(items)) + i
    order = np.lexsort((w, given, kind, ts, key))
    key_s = key[order]
    last = np.r_[np.flatnonzero(np.diff(key_s)), key_s.size - 1] if key_s.size else np.zeros(0, dtype=np.int64)
    first = np.r_[0, last[:-1] + 1] if key_s.size else last
    pick = order[last]
    wsum = np.add.reduceat(w[order], first) if key_s.size else w
    pu, pi, pts, pkind, pgiven = u[pick], i[pick], ts[pick], kind[pick].astype(np.int16), given[pick]
    split = resolve_split(cfg, pgiven)  # auto -> given or ratio, recorded in the snapshot's meta
    if cfg.split == "auto" and split == "ratio" and (pgiven >= 0).any():  # live events on benchmark data, say
        logger.warning("%d of %d interactions carry the source's split and %d do not: auto takes a ratio "
                       "split of all of them ([export] split = \"given\" refuses such data instead)",
                       int((pgiven >= 0).sum()), pgiven.size, int((pgiven < 0).sum()))
    codes = split_interactions(pu, pi, pts, cfg, pgiven)
    across = 0  # pairs whose events the source put in different splits: held where their latest event is
    if split == "given" and key_s.size:
        g = given[order]
        across = int((np.minimum.reduceat(g, first) != np.maximum.reduceat(g, first)).sum())
        if across:
            logger.warning("%d (user, item) pairs have events in more than one of the source's splits: each is "
                           "held in its latest event's split, weights summed (meta.json: pairs_across_splits)",
                           across)
    splits = {name_: Interactions(pu[codes == c], pi[codes == c], wsum[codes == c].astype(np.float32),
                                  pts[codes == c], pkind[codes == c])
              for c, name_ in enumerate(("train", "valid", "test"))}

    rel_src: dict[str, array] = {}
    rel_dst: dict[str, array] = {}
    rel_types: dict[str, tuple[str, str]] = {}
    search_ts = array("q")
    for r in graph.stream("export/edges"):
        rel = r["relation"]
        if not isinstance(rel, str):  # 'has:' + null: a relationship written outside kgrec, without one
            raise KgError(f"a {r['src_type']} -> {r['dst_type']} relationship ({r['src']!r} -> {r['dst']!r}) has no "
                          f"`relation` property (written outside kgrec?): give it one (SET r.relation = "
                          f"'category', say) or delete it; docs/schema.md lists what each relationship needs")
        if rel not in rel_types:
            rel_types[rel] = (r["src_type"], r["dst_type"])
            rel_src[rel], rel_dst[rel] = array("q"), array("q")
        rel_src[rel].append(index[r["src_type"]][r["src"]])
        rel_dst[rel].append(index[r["dst_type"]][r["dst"]])
        if rel == "searched":
            search_ts.append(int(r["ts"] or 0))
    edges = {rel: (np.frombuffer(rel_src[rel], dtype=np.int64), np.frombuffer(rel_dst[rel], dtype=np.int64))
             for rel in rel_types}
    late = 0
    if "searched" in edges:
        src, dst = edges["searched"]
        cut = held_out_from(pu, pts, codes, split, len(users))
        early = before_cut(src, np.frombuffer(search_ts, dtype=np.int64), cut)
        late = int((~early).sum())
        edges["searched"] = (src[early], dst[early])
        if late:
            logger.info("left out %d searches made once their user's held-out events began (%s split)", late, split)
    relations = {rel: _canonical_edges(*edges[rel]) for rel in sorted(rel_types)}
    rel_types = {rel: rel_types[rel] for rel in sorted(rel_types)}

    snapshot = Snapshot(
        ids={"user": users, "item": items, "query": queries, "entity": entities},
        entity_types=[t or "" for t in ent_cols["type"]],
        item_titles=[t or "" for t in item_cols["title"]],
        item_descriptions=[t or "" for t in item_cols["description"]],
        query_texts=[t or "" for t in query_cols["text"]],
        entity_names=[t or "" for t in ent_cols["name"]],
        splits=splits, relations=relations, relation_types=rel_types,
        kinds=names or ["interact"],
        meta={"name": name, "source": f"neo4j:{graph.where}/{graph.database}", "split": split,
              "split_settings": split_settings(split, cfg), "raw_events": int(u.size), "late_searches": late,
              "pairs_across_splits": across},
    )
    sweep_killed_exports(Path(cfg.out_dir), name)
    claimed = _claim_snapshot_dir(Path(cfg.out_dir), f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    try:
        out = snapshot.save(claimed)
    except BaseException:  # a full disk: no empty directory left to pass for a broken snapshot
        shutil.rmtree(claimed, ignore_errors=True)
        raise
    if link_latest:
        point_latest(out, name)
    logger.info("exported %s in %.1fs", out, time.perf_counter() - started)
    return out


def point_latest(snapshot: Path, name: str) -> None:
    """Point ``<name>-latest`` beside ``snapshot`` at it (atomically: a new link renamed over the old)."""
    latest = snapshot.with_name(f"{name}-latest")
    tmp_link = latest.with_name(f".{latest.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")  # two exports: two
    tmp_link.symlink_to(snapshot.name)
    tmp_link.replace(latest)


def export_locked(graph: Graph, cfg: ExportConfig, name: str = "graph", lock_wait_s: float = 0.0) -> Path:
    """:func:`export_snapshot` while holding the ingest lock, so no load commits beside its reads.

    Raises:
        kg.lock.LockedError: an ingest held the lock for longer than ``lock_wait_s``; nothing was written.
        kg.lock.LockLostError: the lock was lost during the export; its snapshot is removed, as it is
            when anything else stops the call once the snapshot is written (a signal, say).
    """
    snapshot = None
    try:
        with graph_lock(graph, INGEST_LOCK, lock_wait_s) as lease:
            snapshot = export_snapshot(graph, cfg, name, link_latest=False)
            lease.check()  # held all through the reads
            point_latest(snapshot, name)  # once it is known whole, and before a later export can link its own
    except BaseException:  # a snapshot its caller never receives would be left for good
        if snapshot is not None:
            discard_snapshot(snapshot, name)
        raise
    return snapshot


def discard_snapshot(snapshot: Path, name: str) -> None:
    """Delete a snapshot :func:`export_snapshot` wrote under ``name``. A ``<name>-latest`` link
    that points at it goes back to the newest other snapshot of that name first (or goes, if
    none), so a reader through the link never finds it naming a half-deleted snapshot."""
    latest = snapshot.with_name(f"{name}-latest")
    if latest.is_symlink() and os.readlink(latest) == snapshot.name:
        others = [p for p in snapshots_named(snapshot.parent, name) if p.name != snapshot.name]
        if others:
            point_latest(others[-1], name)
        else:
            latest.unlink()
    shutil.rmtree(snapshot, ignore_errors=True)


def snapshots_named(out_dir: Path, name: str) -> list[Path]:
    """The snapshots :func:`export_snapshot` wrote under ``name`` in ``out_dir`` (``<name>-<time>``,
    ``-2``… in the same second; not ``<name>-books-<time>``, nor the ``-latest`` link), whole ones
    only (a ``meta.json``), oldest first."""
    stamped = re.compile(_stamped(name))

    def order(path: Path) -> tuple[str, int]:  # the time, then the same second's count
        head, _, tail = path.name.rpartition("-")
        return (head, int(tail)) if len(tail) < 6 else (path.name, 1)

    if not out_dir.is_dir():
        return []
    return sorted((p for p in out_dir.iterdir() if stamped.fullmatch(p.name) and not p.is_symlink()
                   and (p / "meta.json").is_file()), key=order)
