"""Bulk initial load through ``neo4j-admin database import full`` (managed server only).

For large first loads: rows are written as import CSVs, the managed server is stopped, the
database is rebuilt offline from the CSVs (replacing its contents), the server is started
again and the schema applied. It takes the ingest and write-back locks before it stops the
server (refusing while an ingest, export, retrain, forget-user or write-back holds one), and
imports the shared watermark of the events it loaded with them, so the new database holds it from
its first moment and the first ``--incremental`` load after it skips what it already holds (and
the dataset's name, so a later ingest of it is a reload, and another dataset's is refused).
The database it replaces is set aside while the importer runs and put back if it fails, so a
failed import changes nothing; a killed one is finished by the next server start
(:mod:`kg.store_swap`). Text is stored as MERGE
stores it: line breaks, quotes and empty strings included, and so is every property value (a property
key whose values differ in type, which no import column can hold as they are, is refused before
anything is changed). Another process connected from before
(an ingest waiting for the lock) finds its bookmarks ahead of the new database, and goes on
without them after the driver's retries (30 to 50 s; :class:`kg.connection.Graph`). Incremental
loads go through :func:`kg.ingest.ingest` instead.
"""
from __future__ import annotations

import logging
import numbers
import os
import re
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from kgrec.config import Neo4jConfig

from . import store_swap
from .errors import Neo4jSetupError
from .ingest import dataset_key, watermark_key, watermark_of
from .neo4j_server import ADMIN_TOOL, ManagedNeo4j, _java
from .records import GraphRecords

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Graph

logger = logging.getLogger(__name__)


def _write(path: Path, header: list[str], rows) -> int:
    """Write one import CSV. Every string is quoted, so that neo4j-admin stores ``""`` as the empty
    string (as MERGE does); ``None`` is an unquoted empty field, which it stores as no property. (The
    csv module quotes both alike or neither.)"""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write(",".join(header) + "\n")  # identifiers and neo4j-admin's type syntax
        for row in rows:
            fh.write(",".join(map(_field, row)) + "\n")
            n += 1
    return n


def _field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):  # numpy's: 1.5, not np.float64(1.5)
        return repr(int(value) if isinstance(value, numbers.Integral) else float(value))
    return '"' + str(value).replace('"', '""') + '"'


_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: "$" would let a trailing newline through


_COLUMN_TYPES = {bool: "boolean", int: "long", float: "double", str: "string"}


def _prop_columns(rows: list[dict], reserved: set[str]) -> list[tuple[str, str]]:
    """``(key, neo4j-admin type)`` for every key of the rows' ``props`` maps, sorted by key: each
    key's values are all bool, all int, all float or all str.

    Raises:
        Neo4jSetupError: a key that is not a plain identifier (it would be read as header syntax), or
            whose values differ in type: an import column has one type, so it would store ``31`` as
            ``"31"`` and ``3`` beside ``9.5`` as ``3.0``, where MERGE stores each value as it is.
    """
    kinds: dict[str, set[type]] = {}
    for row in rows:
        for key, value in (row.get("props") or {}).items():
            if value is not None:
                kinds.setdefault(key, set()).add(type(value))
    cols = []
    for key in sorted(kinds):
        if not _SAFE_KEY.fullmatch(key) or key in reserved:
            raise Neo4jSetupError(f"property {key!r} cannot be a neo4j-admin import column; "
                                  "load this source without --bulk (the UNWIND path takes any name)")
        types = kinds[key]
        if len(types) != 1 or next(iter(types)) not in _COLUMN_TYPES:
            names = ", ".join(sorted(t.__name__ for t in types))
            raise Neo4jSetupError(f"property {key!r} holds values of type {names}, which one import column cannot "
                                  f"keep as they are (MERGE would): give it one type in the mapping (props = "
                                  f"{{{key} = \"float\"}}, say), or load this source without --bulk")
        cols.append((key, _COLUMN_TYPES[next(iter(types))]))
    return cols


def _prop_values(row: dict, cols: list[tuple[str, str]]) -> list:
    props = row.get("props") or {}
    out = []
    for key, kind in cols:
        v = props.get(key)
        out.append(None if v is None else str(v).lower() if kind == "boolean" else v)
    return out


def write_import_csvs(records: GraphRecords, out: Path, dataset: str | None = None) -> dict[str, Path]:
    """Write node and relationship CSVs in neo4j-admin's header format, recording ``dataset`` as
    ingest does (:func:`kg.ingest.check_dataset`). Returns files by name."""
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / f"{k}.csv" for k in ("users", "items", "queries", "entities", "meta", "interactions",
                                             "searched", "relevant", "has_attribute", "user_attribute",
                                             "related", "friend")}
    user_cols = _prop_columns(records.users, {"id"})
    item_cols = _prop_columns(records.items, {"id", "title", "description"})
    _write(files["users"], ["id:ID(User)", *(f"{k}:{t}" for k, t in user_cols)],
           ([u["id"], *_prop_values(u, user_cols)] for u in records.users))
    _write(files["items"], ["id:ID(Item)", "title", "description", *(f"{k}:{t}" for k, t in item_cols)],
           ([i["id"], i.get("title", ""), i.get("description", ""), *_prop_values(i, item_cols)]
            for i in records.items))
    _write(files["queries"], ["id:ID(Query)", "text"], ([q["id"], q["text"]] for q in records.queries))
    known = {e["id"] for e in records.entities}
    extra = {x for t in records.triples for x in (t["head"], t["tail"]) if x not in known}
    _write(files["entities"], ["id:ID(Entity)", "type", "name"],
           [[e["id"], e["type"], e["name"]] for e in records.entities] + [[x, "kg", x] for x in sorted(extra)])
    # the shared watermark, as ingest sets it: a writer that starts the moment the server is back
    # finds it (set after the restart, an incremental load could start before it)
    latest, _ = watermark_of(int(r.get("ts") or 0) for r in records.interactions)
    meta = [] if latest is None else [[watermark_key(), latest]]
    if dataset is not None:  # and the dataset, for a later ingest's check (the value: when, in ms)
        meta.append([dataset_key(dataset), int(time.time() * 1000)])
    _write(files["meta"], ["key:ID(KgrecMeta)", "value:long"], meta)
    _write(files["interactions"], [":START_ID(User)", ":END_ID(Item)", "kind", "weight:float", "ts:long", "split"],
           ([r["user"], r["item"], r.get("kind") or "interact", float(r.get("weight", 1.0)), int(r.get("ts") or 0),
             r.get("split") or ""] for r in records.interactions))
    _write(files["searched"], [":START_ID(User)", ":END_ID(Query)", "ts:long"],
           ([r["user"], r["query"], r["ts"]] for r in records.user_queries))
    _write(files["relevant"], [":START_ID(Query)", ":END_ID(Item)", "relevance:float"],
           ([r["query"], r["item"], r["relevance"]] for r in records.query_items))
    _write(files["has_attribute"], [":START_ID(Item)", ":END_ID(Entity)", "relation"],
           ([r["item"], r["entity"], r["relation"]] for r in records.item_entities))
    _write(files["user_attribute"], [":START_ID(User)", ":END_ID(Entity)", "relation"],
           ([r["user"], r["entity"], r["relation"]] for r in records.user_entities))
    _write(files["related"], [":START_ID(Entity)", ":END_ID(Entity)", "relation"],
           ([r["head"], r["tail"], r["relation"]] for r in records.triples))
    _write(files["friend"], [":START_ID(User)", ":END_ID(User)"], ([r["user"], r["friend"]] for r in records.friends))
    return files


def bulk_import(records: GraphRecords, config: Neo4jConfig, workdir: Path | None = None,
                dataset: str | None = None) -> dict:
    """Replace the managed database with ``records`` via the offline importer (``dataset``: the
    dataset they are, recorded as ingest records it).

    Returns:
        Timings (csv, import, restart seconds) and the importer's summary tail.

    Raises:
        Neo4jSetupError: not a managed server, or the importer failed (its output is included).
        kg.lock.LockedError: a writer holds the ingest or the write-back lock; nothing was changed.
    """
    from .connection import connect

    server = ManagedNeo4j(config)
    java = _java()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        t = time.perf_counter()
        files = write_import_csvs(records, Path(tmp), dataset)
        timings["csv_seconds"] = round(time.perf_counter() - t, 2)
        with server.exclusive():  # no `kgrec neo4j start` (a cron retrain's) between the stop and the start
            if not server.status().running:
                return _import_and_restart(server, config, java, files, Path(tmp), timings)
            with connect(config) as g, _writers_locked_out(g):  # taken now, after the CSVs and the wait
                return _import_and_restart(server, config, java, files, Path(tmp), timings)


@contextmanager
def _writers_locked_out(graph: Graph) -> Iterator[None]:
    """Hold the ingest and write-back locks (ingest, export, forget-user; a write-back, a retrain's
    last stage) from before the server stops: no writer is under way, and none starts before the
    stop to write half its rows into the database the import replaces. The replaced database takes
    the lock nodes with it; a failed import leaves the old one, where they are released. They are
    not renewed (the server is down for most of the hold), so a crash leaves them stale in minutes.

    Raises:
        kg.lock.LockedError: a writer holds one of them; nothing was changed.
    """
    from .lock import INGEST_LOCK, STALE_S, WRITEBACK_LOCK, LockedError, describe_holder, graph_lock, lock_holder

    with ExitStack() as held:
        for name in (INGEST_LOCK, WRITEBACK_LOCK):
            try:
                held.enter_context(graph_lock(graph, name, heartbeat_s=STALE_S * 100))
            except LockedError:
                holder = lock_holder(graph, name)
                raise LockedError(f"another kgrec writer holds the {name!r} lock ("
                                  f"{describe_holder(holder) if holder else 'one that has just finished'}); the bulk "
                                  f"import would replace the database under it. Nothing was changed: retry when it "
                                  f"is done") from None
        try:
            yield
        finally:  # the locks are released (a failed import's database has them) into the database as it is now
            graph.forget_bookmarks()


def _output(proc: subprocess.CompletedProcess) -> str:
    """The end of what neo4j-admin printed."""
    return (proc.stdout + proc.stderr)[-2000:]


def _import_and_restart(server: ManagedNeo4j, config: Neo4jConfig, java: str, files: dict[str, Path], tmp: Path,
                        timings: dict[str, float]) -> dict:
    """Stop the server, run neo4j-admin import, start it again (whatever happens), then apply the
    schema; the caller holds the server's start lock."""
    from .connection import connect
    from .schema import apply_schema

    server.stop()
    proc = None
    try:  # the server comes back up whatever happens here (an error, a signal)
        conf_dir = server.home / "conf"
        if not (conf_dir / "neo4j.conf").exists():
            server.install()
            server._write_conf()
        # the old database moves aside, journalled: put back if the import fails, deleted once it succeeded
        store_swap.set_aside(server.home, config.database)
        # --multiline-fields: a quoted description holding a line break is one field, not a failed import
        args = [java, "-cp", str(server.lib_dir / "*"), ADMIN_TOOL, "database", "import", "full", config.database,
                "--overwrite-destination=true", "--multiline-fields=true", "--threads=2",
                f"--report-file={tmp / 'import.report'}",
                f"--nodes=User={files['users']}", f"--nodes=Item={files['items']}",
                f"--nodes=Query={files['queries']}", f"--nodes=Entity={files['entities']}",
                f"--nodes=KgrecMeta={files['meta']}",
                f"--relationships=INTERACTED={files['interactions']}",
                f"--relationships=SEARCHED={files['searched']}", f"--relationships=RELEVANT={files['relevant']}",
                f"--relationships=HAS_ATTRIBUTE={files['has_attribute']}",
                f"--relationships=HAS_ATTRIBUTE={files['user_attribute']}",
                f"--relationships=RELATED={files['related']}", f"--relationships=FRIEND={files['friend']}"]
        env = {**os.environ, "NEO4J_HOME": str(server.home), "NEO4J_CONF": str(conf_dir)}
        t = time.perf_counter()
        # the importer holds the start lock too: were this process killed (-9), no start could recover
        # the swap (kg.store_swap) while it still writes
        proc = subprocess.run(args, capture_output=True, text=True, env=env,
                              pass_fds=() if server.lock_fd is None else (server.lock_fd,))
        timings["import_seconds"] = round(time.perf_counter() - t, 2)
        if proc.returncode == 0:
            store_swap.mark_imported(server.home)  # else the swap goes back: the old database returns
    finally:
        t = time.perf_counter()
        try:
            server.start()  # which first finishes the swap (kg.store_swap.recover)
        except Exception as exc:  # a failed import's own words are kept beside the start's
            if proc is None or proc.returncode == 0:
                raise
            raise Neo4jSetupError(f"neo4j-admin import failed:\n{_output(proc)}\nand the server then failed to "
                                  f"start (its next start puts the old database back): {exc}") from exc
    if proc.returncode != 0:  # before the schema: a failed import's own words, not the database's
        raise Neo4jSetupError(f"neo4j-admin import failed; the database is as it was before:\n{_output(proc)}")
    with connect(config) as g:  # the watermark came with the import; a writer waiting out the restart may go
        apply_schema(g)
    timings["restart_seconds"] = round(time.perf_counter() - t, 2)
    return {**timings, "summary": proc.stdout.strip().splitlines()[-6:]}
