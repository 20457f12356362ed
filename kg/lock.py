"""A named lock held in the graph itself, so that two writers on different machines exclude each other.

The lock is a ``(:KgrecLock {name})`` node under a uniqueness constraint: creating it succeeds for
exactly one holder. It records who holds it (host, pid, the process's identity, a random owner
token), since when, and ``renewed``: a heartbeat thread refreshes it every ``heartbeat_s``
seconds while the holder works, and the holder deletes the node when done.

A lock is taken over, with a warning, when its holder is certainly gone:

- its heartbeat is older than ``stale_s`` (the holder was killed, or its machine died), or
- the holder was a process of this very machine and process namespace that no longer runs (the
  identity compares boot id, pid namespace and the process's start time, so a reused pid or a
  container that shares the host name is not mistaken for it).

``kgrec unlock`` (:func:`break_lock`) removes a lock whose holder is not alive, or any with ``force``.

The holder learns when it may no longer hold the lock: :meth:`Lease.check`, which writers call before
each batch, raises :class:`LockLostError` once a renewal found the lock gone (taken over, or removed
by ``kgrec unlock --force``), or once no renewal has succeeded for ``0.8 * stale_s`` (the holder was
cut off from the database long enough that another writer may take the lock over soon). A batch
already sent when that happens still commits: the lease narrows the overlap to one batch per writer.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from .connection import Graph
from .errors import ConstraintViolation, KgError
from .schema import apply_schema

logger = logging.getLogger(__name__)

INGEST_LOCK = "ingest"
WRITEBACK_LOCK = "writeback"  # serving's write-back: one at a time, each removes what is not its model's
HEARTBEAT_S = 15.0
STALE_S = 120.0  # eight missed heartbeats


class LockedError(KgError):
    """Another writer holds the lock."""


class LockLostError(KgError):
    """The holder's lock was taken over, or not renewed for so long that it may be."""


# Seconds that count a suspended machine's sleep too (Linux CLOCK_BOOTTIME): a holder paused past
# stale_s must find its lease expired on waking, as the writers that took over did.
_clock: Callable[[], float] = (functools.partial(time.clock_gettime, time.CLOCK_BOOTTIME)
                               if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic)


class Lease:
    """The holder's side of a lock it took (what :func:`graph_lock` yields)."""

    def __init__(self, name: str, owner: str, stale_s: float) -> None:
        self.name, self.owner = name, owner
        self.expire_s = 0.8 * stale_s  # others take over at stale_s after the last renewal they saw
        self.renewed_at = _clock()  # when the last renewal that succeeded was sent
        self.lost: str | None = None  # why the lock is no longer held

    def check(self) -> None:
        """Return if the lock is still held; call it before each write.

        Raises:
            LockLostError: a renewal found the lock gone, or none has succeeded for ``0.8 * stale_s``.
        """
        idle = _clock() - self.renewed_at
        if self.lost is None and idle > self.expire_s:
            self.lost = (f"it could not be renewed for {idle:.0f} s, so another writer may take it over; the "
                         f"database was unreachable or too slow")
        if self.lost is not None:
            raise LockLostError(f"lost the {self.name!r} lock: {self.lost}. Stopped before the next write; "
                                f"anything written before stays (an ingest run again completes its load)")


def lock_holder(graph: Graph, name: str = INGEST_LOCK) -> dict[str, Any] | None:
    """``{"owner", "host", "pid", "proc", "since", "idle_s"}`` of the lock's holder (``idle_s``:
    seconds since its last heartbeat, on the leader's clock, which wrote it: a follower's clock ahead
    would find a live holder stale), or None when the lock is free."""
    rows = graph.query("lock/holder", leader_=True, lock=name)
    return rows[0] if rows else None


def holder_is_gone(holder: dict[str, Any], stale_s: float = STALE_S) -> bool:
    """Whether the holder has certainly stopped: no heartbeat for ``stale_s`` seconds, or a process
    of this machine and pid namespace that no longer runs."""
    if holder.get("idle_s") is not None and holder["idle_s"] > stale_s:
        return True
    proc = holder.get("proc") or ""
    mine = process_identity(os.getpid())
    if not proc or mine is None or proc.rsplit(":", 2)[0] != mine.rsplit(":", 2)[0]:
        return False  # another machine or container: only the heartbeat can tell
    pid = int(proc.rsplit(":", 2)[1])
    now = process_identity(pid)
    if now is None and pid_exists(pid):  # /proc hides another user's processes (hidepid): it may run
        return False
    return now != proc  # gone, or the pid now belongs to a younger process


def pid_exists(pid: int) -> bool:
    """Whether some process has ``pid`` (one of another user's counts; 0 and below name none:
    ``os.kill`` reads them as process groups)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    return True


def process_identity(pid: int) -> str | None:
    """``<boot id>:<pid namespace>:<pid>:<start time>`` of a live process, None when it does not
    run (or /proc is not there)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
        with open(f"/proc/{pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]  # field 22, after "pid (comm)"
    except (OSError, IndexError):
        return None
    return f"{boot}:{namespace}:{pid}:{start}"


def break_lock(graph: Graph, name: str = INGEST_LOCK, force: bool = False) -> dict[str, Any] | None:
    """Remove the lock when its holder is gone (:func:`holder_is_gone`), or whatever the holder with
    ``force``; returns the holder removed (None when the lock was free).

    Raises:
        LockedError: the holder is alive as far as can be told, and ``force`` is off.
    """
    holder = lock_holder(graph, name)
    if holder is None:
        return None
    if not force and not holder_is_gone(holder):
        raise LockedError(f"the {name!r} lock on {graph.where} is held by {describe_holder(holder)}, which is alive "
                          f"(heartbeat {holder['idle_s']:.0f} s ago); wait for it, or use --force if you "
                          f"know it is dead")
    if force:
        graph.write("lock/release", lock=name, owner=holder["owner"])  # only that holder's, never a newer one
    elif not _take_over(graph, name, holder):
        now = lock_holder(graph, name)
        if now is None:
            return None  # released meanwhile: free
        raise LockedError(f"the {name!r} lock changed hands or was renewed just now: held by {describe_holder(now)}")
    return holder


def _take_over(graph: Graph, name: str, holder: dict[str, Any]) -> bool:
    """Remove a gone holder's lock unless it renewed since ``holder`` was read; whether it did."""
    return graph.write("lock/take_over", lock=name, owner=holder["owner"], beat=holder.get("beat")).nodes_deleted > 0


def _busy(graph: Graph, name: str, holder: dict[str, Any], stale_s: float) -> LockedError:
    unlock = "kgrec unlock" if name == INGEST_LOCK else f"kgrec unlock --lock {name}"
    return LockedError(
        f"another kgrec writer holds the {name!r} lock on {graph.where} ({describe_holder(holder)}); nothing "
        f"was written. Wait for it to finish and retry (--wait SECONDS); a holder that died is taken "
        f"over once its heartbeat is {stale_s:.0f} s old, or now with `{unlock}`.")


def raise_if_busy(graph: Graph, name: str = INGEST_LOCK, stale_s: float = STALE_S) -> None:
    """Raise the :class:`LockedError` that :func:`graph_lock` without a wait would raise, when a
    holder that is not gone holds the lock now: a command that prepares at length before it takes
    the lock (an ingest reading its file) fails at once instead of after the preparation."""
    holder = lock_holder(graph, name)
    if holder is not None and not holder_is_gone(holder, stale_s):
        raise _busy(graph, name, holder, stale_s)


@contextmanager
def graph_lock(graph: Graph, name: str = INGEST_LOCK, wait_s: float = 0.0, poll_s: float = 0.5,
               heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S) -> Iterator[Lease]:
    """Hold the named lock for the ``with`` block, renewing it every ``heartbeat_s`` seconds; the
    block gets the :class:`Lease`, whose ``check()`` tells whether the lock is still held.

    Args:
        graph: connected graph (the lock's constraint is created if missing).
        name: which lock; kgrec's writers of source data share :data:`INGEST_LOCK`.
        wait_s: how long to wait for a busy lock before giving up.
        poll_s: how often to try again while waiting.
        heartbeat_s: how often the holder renews the lock.
        stale_s: a lock not renewed for this long is taken over.

    Raises:
        LockedError: the lock stayed busy for ``wait_s`` seconds; the message names its holder.
        ValueError: ``wait_s`` is below 0 or not a number (``ingest.lock_wait_s``).
    """
    if not wait_s >= 0:  # NaN too: a deadline of NaN never passes
        raise ValueError(f"ingest.lock_wait_s must be >= 0 seconds, got {wait_s}")
    apply_schema(graph)
    owner = uuid.uuid4().hex
    mine = {"lock": name, "owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
            "proc": process_identity(os.getpid()) or ""}
    deadline = _clock() + wait_s
    lease = Lease(name, owner, stale_s)
    while True:
        # a lower bound on when the lock became ours (on a cluster whose reads lag, the "released in
        # between" retry can move it later by one round trip: far inside the 0.2 * stale_s margin)
        sent = _clock()
        if _try_acquire(graph, mine):
            break
        holder = lock_holder(graph, name)
        if holder is None:
            continue  # released in between: try again at once
        if holder["owner"] == owner:
            break  # our own CREATE committed, and the driver retried it after a lost acknowledgement
        # a holder that renewed meanwhile (or that a lagging read saw stale) is waited for as a live one
        if holder_is_gone(holder, stale_s) and _take_over(graph, name, holder):
            logger.warning("took over the %r lock of %s, which is gone (heartbeat %.0f s ago)",
                           name, describe_holder(holder), holder["idle_s"] or 0)
            continue  # free now: take it
        if _clock() >= deadline:
            raise _busy(graph, name, holder, stale_s)
        time.sleep(poll_s)
    lease.renewed_at = sent  # held from the moment the CREATE that took it was sent
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(graph, lease, heartbeat_s, done), daemon=True,
                            name=f"kgrec-lock-{name}")
    beat.start()
    try:
        yield lease
    finally:
        lease.lost = lease.lost or "it was released"  # a writer thread still running stops at its next check
        done.set()
        try:  # released first: a second signal during the join below must not leave it held
            graph.write("lock/release", lock=name, owner=owner)
        except Exception:  # never hide the block's own error; the heartbeat lets others take over
            logger.exception("could not release the %r lock; others take it over in %.0f s", name, stale_s)
        beat.join(timeout=5)  # a renewal stuck in the driver's retries must not hold up the exit


def _heartbeat(graph: Graph, lease: Lease, every_s: float, done: threading.Event) -> None:
    while lease.lost is None and not done.wait(every_s):
        sent = _clock()
        try:
            renewed = graph.write("lock/renew", lock=lease.name, owner=lease.owner).properties_set > 0
        except Exception as e:  # a missed beat is not fatal: the lock goes stale only after many
            logger.warning("could not renew the %r lock: %s", lease.name, e)
            continue
        if renewed:
            lease.renewed_at = sent
        else:
            lease.lost = "another writer took it over, or `kgrec unlock --force` removed it"
            if not done.is_set():  # after the block a renewal can find the lock its holder just released
                logger.error("lost the %r lock: %s", lease.name, lease.lost)


def _try_acquire(graph: Graph, mine: dict[str, Any]) -> bool:
    try:
        graph.write("lock/acquire", **mine)
    except ConstraintViolation:
        return False
    return True


def describe_holder(holder: dict[str, Any]) -> str:
    """Who holds a lock, for messages: process, host, since when."""
    return f"process {holder['pid']} on {holder['host']} since {holder['since']}"
