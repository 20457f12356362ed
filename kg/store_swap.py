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

The server must be stopped throughout: callers hold its start lock, and give it to the importer
(``kg.bulk_import``), so that a start after a ``kill -9`` of kgrec waits for an importer still
writing before it recovers the swap.
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


def set_aside(home: Path, database: str) -> None:
    """Finish any interrupted swap (:func:`recover`), then move ``database``'s store and logs aside
    for an import, journalled as ``importing``.

    Raises:
        Neo4jSetupError: a ``.before-import`` copy without a journal (nothing says which database
            is the one to keep), or a store directory that is a symbolic link; nothing was changed.
    """
    recover(home)
    stores = store_dirs(home, database)
    left = [d for d in stores if _aside(d).exists()]
    if left:
        raise Neo4jSetupError(f"{_orphans(left)}. Nothing was changed: with the server stopped, keep one of each "
                              f"pair (the copy: move the other away, then rename the copy back without "
                              f"{ASIDE_SUFFIX}; or delete the copy), then import again")
    linked = [d for d in stores if d.is_symlink()]
    if linked:  # renaming the link would not move its store, and the import would not write there
        raise Neo4jSetupError(f"{linked[0]} is a symbolic link: a bulk import replaces the directory, so the "
                              f"new database would not be where the link points. Nothing was changed: load "
                              f"without --bulk, or move the store to where the link is and import again")
    moved = [d for d in stores if d.exists()]  # a database that never started has no logs yet
    _write_journal(home, {"database": database, "phase": "importing",
                          "moved": [str(d.relative_to(home)) for d in moved]})
    for d in moved:
        d.rename(_aside(d))


def mark_imported(home: Path) -> None:
    """Journal that the import succeeded: from now on the swap goes forward (the new database stays,
    the old one's copies go), whenever :func:`recover` finishes it. Without this, it goes back."""
    _write_journal(home, {**_journal(home), "phase": "imported"})


def recover(home: Path) -> bool:
    """Finish a swap the journal in ``home`` says is under way: forward (delete the old copies) once
    the import succeeded, else back (the old database returns); then sweep what a killed deletion
    left. Returns whether there was one. Safe to repeat at any point of a kill."""
    journal = _journal(home)
    if journal is None:
        orphans = _stores_with_copies(home)
        if orphans:
            logger.warning("%s: left as they are (no journal says which to keep)", _orphans(orphans))
    else:
        stores = store_dirs(home, journal["database"])
        forward = journal.get("phase") == "imported"
        moved = {home / part for part in journal.get("moved", ())}
        doomed: list[Path] = []
        for d in stores:  # every rename before any deletion
            if forward:
                if _aside(d).exists():
                    doomed.append(rename_away(_aside(d)))
                continue
            put_back = d in moved and _aside(d).exists()  # else there was none, or it is back already
            if (put_back or d not in moved) and d.exists():  # what stands there is the failed import's
                doomed.append(rename_away(d))
            if put_back:
                _aside(d).rename(d)
        for d in stores:
            sync_dir(d.parent)
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


def _stores_with_copies(home: Path) -> list[Path]:
    """Every database directory under ``home`` that has a ``.before-import`` copy beside it."""
    return [d.with_name(d.name.removesuffix(ASIDE_SUFFIX)) for part in ("databases", "transactions")
            for d in sorted((home / "data" / part).glob(f"*{ASIDE_SUFFIX}"))]


def _orphans(stores: list[Path]) -> str:
    return (f"{[str(_aside(d)) for d in stores]} hold a database a bulk import set aside and left no journal "
            f"for; {[str(d) for d in stores]} beside them may hold another")


def _journal(home: Path) -> dict | None:
    """The journal's state, or None when there is none.

    Raises:
        Neo4jSetupError: it cannot be read (changed by hand, or a disk fault): which way the swap
            goes is for the user to say.
    """
    path = home / "data" / JOURNAL
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if not (isinstance(state, dict) and isinstance(state.get("database"), str)
                and state.get("phase") in ("importing", "imported") and isinstance(state.get("moved", []), list)):
            raise ValueError(f"not a swap's state: {state!r}"[:200])
    except ValueError as e:  # JSONDecodeError too
        raise Neo4jSetupError(f"{path} cannot be read ({e}): it says which way an interrupted bulk import's swap "
                              f"goes. The database it replaced is in the {ASIDE_SUFFIX} directories beside "
                              f"data/databases and data/transactions' own: with the server stopped, keep one of "
                              f"each pair, then delete {path}") from e
    return state


def _write_journal(home: Path, state: dict) -> None:
    """Replace the journal in one rename, flushed: a crash leaves the old state or the new."""
    path = home / "data" / JOURNAL
    tmp = path.with_name(path.name + ".tmp")
    write_synced(tmp, lambda fh: fh.write(json.dumps(state).encode()))
    tmp.replace(path)
    sync_dir(path.parent)
