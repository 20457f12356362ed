"""Swapping the managed server's database for a bulk import, so that nothing can lose the old one.

``neo4j-admin database import`` deletes its destination first and leaves a failed import's store
unusable. So :func:`set_aside` moves the database's store and transaction logs out of its way
(``<name>.before-import``), to be deleted once the import succeeded or put back if it failed.

A journal beside them (``data/bulk-import.journal``), written before the first rename and removed
after the last, says which way an interrupted swap goes: ``importing`` rolls back (the old
database returns), ``imported`` (:func:`mark_imported`) rolls forward (the new one stays).
:func:`recover` finishes the swap that way. Every server start calls it first (a bulk import
starts the server when the importer is done), and so does every swap, so a kill at any point
(even ``kill -9``) is finished by the next of them. Deletions rename first
(:func:`kg.durable.set_aside`): a kill while they run leaves only ``.removing-*`` directories,
which the next recovery sweeps.

The server must be stopped throughout: callers hold its start lock.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from .durable import REMOVING_PREFIX, remove_tree, sync_dir, write_synced
from .durable import set_aside as rename_away
from .errors import Neo4jSetupError

logger = logging.getLogger(__name__)

JOURNAL = "bulk-import.journal"
ASIDE_SUFFIX = ".before-import"


def store_dirs(home: Path, database: str) -> list[Path]:
    """The directories that hold ``database`` in the managed server at ``home``: its store and its
    transaction logs (what ``neo4j-admin database import`` replaces). Neo4j folds database names to
    lower case (``NEO4J_DATABASE=Neo4j`` is ``neo4j``), and so do their directories."""
    return [home / "data" / "databases" / database.lower(), home / "data" / "transactions" / database.lower()]


def set_aside(home: Path, database: str) -> list[Path]:
    """Finish any interrupted swap (:func:`recover`), then move ``database``'s store and logs aside
    for an import, journalled as ``importing``. Returns the store directories.

    Raises:
        Neo4jSetupError: a ``.before-import`` copy without a journal (nothing says which database
            is the one to keep); nothing was changed.
    """
    recover(home)
    stores = store_dirs(home, database)
    left = [str(_aside(d)) for d in stores if _aside(d).exists()]
    if left:
        raise Neo4jSetupError(f"{left} hold a database set aside by a bulk import that left no journal: keep it "
                              f"(the server stopped: remove {[str(d) for d in stores]}, then rename each back "
                              f"without {ASIDE_SUFFIX}) or delete it, then import again. Nothing was changed")
    moved = [d for d in stores if d.exists()]  # a database that never started has no logs yet
    _write_journal(home, {"database": database, "phase": "importing",
                          "moved": [str(d.relative_to(home)) for d in moved]})
    for d in moved:
        d.rename(_aside(d))
    return stores


def mark_imported(home: Path) -> None:
    """Journal that the import succeeded: from now on the swap goes forward (the new database stays,
    the old one's copies go), whenever :func:`recover` finishes it. Without this, it goes back."""
    _write_journal(home, {**_journal(home), "phase": "imported"})


def recover(home: Path) -> bool:
    """Finish a swap the journal in ``home`` says is under way: forward (delete the old copies) once
    the import succeeded, else back (the old database returns); then sweep what a killed deletion
    left. Returns whether there was one. Safe to repeat at any point of a kill."""
    journal = _journal(home)
    if journal is not None:
        stores = store_dirs(home, journal["database"])
        forward = journal.get("phase") == "imported"
        moved = {home / part for part in journal.get("moved", ())}
        doomed: list[Path] = []
        for d in stores:  # every rename before any deletion
            if forward:
                if _aside(d).exists():
                    doomed.append(rename_away(_aside(d)))
            elif d not in moved:  # there was none: what stands there is the failed import's
                if d.exists():
                    doomed.append(rename_away(d))
            elif _aside(d).exists():  # not put back yet: what stands in its place is the import's
                if d.exists():
                    doomed.append(rename_away(d))
                _aside(d).rename(d)
        sync_dir(home / "data" / "databases")
        sync_dir(home / "data" / "transactions")
        (home / "data" / JOURNAL).unlink()
        sync_dir(home / "data")
        for path in doomed:
            remove_tree(path)
        if not forward:
            logger.warning("a bulk import did not finish: the database it would have replaced is back in place")
    for part in ("databases", "transactions"):
        for leftover in (home / "data" / part).glob(f"{REMOVING_PREFIX}*"):  # only a swap deletes there
            remove_tree(leftover)
    (home / "data" / f"{JOURNAL}.tmp").unlink(missing_ok=True)  # a journal write killed before its rename
    return journal is not None


def _aside(store: Path) -> Path:
    return store.with_name(store.name + ASIDE_SUFFIX)


def _journal(home: Path) -> dict | None:
    path = home / "data" / JOURNAL
    return json.loads(path.read_text()) if path.exists() else None


def _write_journal(home: Path, state: dict) -> None:
    """Replace the journal in one rename, flushed: a crash leaves the old state or the new."""
    path = home / "data" / JOURNAL
    tmp = path.with_name(path.name + ".tmp")
    write_synced(tmp, lambda fh: fh.write(json.dumps(state).encode()))
    tmp.replace(path)
    sync_dir(path.parent)
