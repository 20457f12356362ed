"""A named lock held in the graph itself, so that two writers on different machines exclude each other.

The lock is a ``(:KgrecLock {name})`` node under a uniqueness constraint: creating it succeeds for
exactly one holder. It records who holds it (host, pid, a random owner token) and since when, and
is deleted when the holder is done. A lock whose holder is a dead process on this host is taken
over with a warning; one left by a process on another machine that died is removed with
``kgrec unlock`` (:func:`break_lock`).
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from .connection import Graph
from .errors import ConstraintViolation, KgError
from .schema import apply_schema

logger = logging.getLogger(__name__)

INGEST_LOCK = "ingest"


class LockedError(KgError):
    """Another writer holds the lock."""


def lock_holder(graph: Graph, name: str = INGEST_LOCK) -> dict[str, Any] | None:
    """``{"owner", "host", "pid", "since"}`` of the lock's holder, or None when it is free."""
    rows = graph.query("lock/holder", lock=name)
    return rows[0] if rows else None


def break_lock(graph: Graph, name: str = INGEST_LOCK) -> dict[str, Any] | None:
    """Remove the lock whoever holds it; returns the holder it removed (None when it was free)."""
    holder = lock_holder(graph, name)
    graph.write("lock/break", lock=name)
    return holder


@contextmanager
def graph_lock(graph: Graph, name: str = INGEST_LOCK, wait_s: float = 0.0, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the named lock for the ``with`` block.

    Args:
        graph: connected graph (the lock's constraint is created if missing).
        name: which lock; kgrec's writers of source data share :data:`INGEST_LOCK`.
        wait_s: how long to wait for a busy lock before giving up.
        poll_s: how often to try again while waiting.

    Raises:
        LockedError: the lock stayed busy for ``wait_s`` seconds; the message names its holder.
    """
    apply_schema(graph)
    owner = uuid.uuid4().hex
    mine = {"lock": name, "owner": owner, "host": socket.gethostname(), "pid": os.getpid()}
    deadline = time.monotonic() + wait_s
    while not _try_acquire(graph, mine):
        holder = lock_holder(graph, name)
        if holder is not None and _died_here(holder):
            logger.warning("taking over the %r lock left by dead process %s on this host (since %s)",
                           name, holder["pid"], holder["since"])
            graph.write("lock/release", lock=name, owner=holder["owner"])
            continue
        if time.monotonic() >= deadline:
            who = "someone" if holder is None else f"process {holder['pid']} on {holder['host']} since {holder['since']}"
            raise LockedError(
                f"another kgrec writer holds the {name!r} lock on {graph.where} ({who}); nothing was written. "
                f"Wait for it to finish and retry; if that process is dead, run `kgrec unlock`.")
        time.sleep(poll_s)
    try:
        yield
    finally:
        graph.write("lock/release", lock=name, owner=owner)


def _try_acquire(graph: Graph, mine: dict[str, Any]) -> bool:
    try:
        graph.write("lock/acquire", **mine)
    except ConstraintViolation:
        return False
    return True


def _died_here(holder: dict[str, Any]) -> bool:
    """Whether the holder is a process of this host that no longer exists."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False
