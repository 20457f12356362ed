"""Concurrent interaction writes that never share a node between concurrent transactions.

Users and items are dealt round-robin into ``P`` buckets each, which cuts the events into a P x P
grid of blocks. A batch holds events of one block only. ``P`` writer threads take ready batches
from a :class:`BlockScheduler`, which hands out a batch only when no running transaction holds its
user bucket or its item bucket, so concurrent transactions touch disjoint users and disjoint items
and do not wait on each other's node locks (dense item nodes deadlocked when only the users were
disjoint). The scheduler serves the grid diagonal by diagonal (blocks (b, (b + r) mod P) for
r = 0, 1, ...): a new relationship locks the first relationship of both of its nodes' chains, so
alternating between diagonals makes every batch start on chain heads another writer just made; that
measured 33k-37k rel/s against 40k-48k on the 1M bench (docs/ingest.md). Batches are cut while the writers already work on the first diagonal, so the
client's grouping overlaps the server's work.

Events are rows ``{"user", "item", "kind", "ts", "weight", "split"}``, deduplicated by
(user, item, kind, ts) with the last row winning. Users without any interaction in the graph get
``CREATE`` (cypher/ingest/create_interactions), the others ``MERGE`` (merge_interactions).
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from .connection import Graph, batches

EVENT_FIELDS = ("item", "kind", "ts", "weight", "split")
STATEMENTS = {False: "ingest/create_interactions", True: "ingest/merge_interactions"}

Block = tuple[int, int]
Batch = tuple[Block, str, list[dict]]  # (block, statement, rows)


class BlockScheduler:
    """Ready batches per block of a ``parts`` x ``parts`` grid, served diagonal by diagonal;
    :meth:`take` hands out a batch of the current diagonal whose block is not being written. The
    blocks of one diagonal share no user bucket and no item bucket, so running batches never do."""

    def __init__(self, parts: int) -> None:
        self._parts = parts
        self._round = 0  # the diagonal being served: blocks (b, (b + round) mod parts)
        self._cv = threading.Condition()
        self._ready: dict[Block, deque[Batch]] = {}
        self._busy: set[Block] = set()
        self._closed = False
        self._failed = False

    def put(self, batch: Batch) -> bool:
        """Queue a batch; False (and nothing queued) once a writer failed: the load is being abandoned."""
        with self._cv:
            if not self._failed:
                self._ready.setdefault(batch[0], deque()).append(batch)
                self._cv.notify_all()
            return not self._failed

    def close(self) -> None:
        """No more batches will come: writers drain the queue and stop."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def fail(self) -> None:
        """A writer failed: drop queued batches and stop every writer."""
        with self._cv:
            self._failed = True
            self._ready.clear()
            self._cv.notify_all()

    def take(self) -> Batch | None:
        """Block until a batch of the current diagonal whose block is idle is ready; None once
        every batch is written (or a writer failed)."""
        with self._cv:
            while True:
                if self._failed or self._round >= self._parts:
                    return None
                diagonal = [(b, (b + self._round) % self._parts) for b in range(self._parts)]
                for block in diagonal:
                    queue = self._ready.get(block)
                    if queue and block not in self._busy:
                        self._busy.add(block)
                        return queue.popleft()
                if self._closed and not self._busy and not any(self._ready.get(k) for k in diagonal):
                    self._round += 1  # this diagonal is done: the next one may start
                    self._cv.notify_all()
                    continue
                self._cv.wait()

    def release(self, block: Block) -> None:
        """The batch of ``block`` is written: its block may take the next one."""
        with self._cv:
            self._busy.discard(block)
            self._cv.notify_all()


def cut_batches(unique: Iterable[dict], known_users: set[str], parts: int, size: int) -> Iterator[Batch]:
    """Cut deduplicated events into batches of about ``size`` events, each inside one block and one
    statement, as per-user rows ``{"user", "item": [...], "kind": [...], ...}`` (a user's events
    that fall in one pending batch share a row)."""
    user_bucket: dict[str, int] = {}
    item_bucket: dict[str, int] = {}
    pending: dict[tuple[Block, bool], dict[str, dict]] = {}  # (block, known user) -> rows by user
    counts: dict[tuple[Block, bool], int] = {}  # events in each pending batch
    for e in unique:
        user = e["user"]
        ub = user_bucket.get(user)
        if ub is None:
            ub = user_bucket[user] = len(user_bucket) % parts
        ib = item_bucket.get(e["item"])
        if ib is None:
            ib = item_bucket[e["item"]] = len(item_bucket) % parts
        key = ((ub, ib), user in known_users)
        rows = pending.setdefault(key, {})
        row = rows.get(user)
        if row is None:
            row = rows[user] = {"user": user, **{f: [] for f in EVENT_FIELDS}}
        for f in EVENT_FIELDS:
            row[f].append(e[f])
        counts[key] = counts.get(key, 0) + 1
        if counts[key] >= size:
            del pending[key], counts[key]
            yield key[0], STATEMENTS[key[1]], list(rows.values())
    for (block, known), rows in pending.items():
        yield block, STATEMENTS[known], list(rows.values())


def write_interactions(graph: Graph, events: list[dict], writers: int, size: int,
                       progress: bool = True, check: Callable[[], None] | None = None) -> dict[str, int]:
    """Write normalised interaction events with ``writers`` concurrent writers (see module doc);
    ``check`` runs before each batch (the ingest lock's ``Lease.check``) and stops them by raising.

    Returns:
        ``{"sent": events written, "new_users": n, "known_users": n, "relationships_created": n,
        "properties_set": n, "not_written": events whose user or item was not in the graph,
        "resplit": events stored with another non-empty split, now moved to the one given}``.
    """
    parts = max(1, writers)
    unique = {(e["user"], e["item"], e["kind"], e["ts"]): e for e in events}
    users = list(dict.fromkeys(key[0] for key in unique))
    known: set[str] = set()
    for chunk in batches(users, 20_000):
        known.update(r["id"] for r in graph.query("ingest/users_with_interactions", ids=chunk))
    totals = {"relationships_created": 0, "properties_set": 0, "not_written": 0, "resplit": 0}
    lock = threading.Lock()
    scheduler = BlockScheduler(parts)
    bar = tqdm(total=len(unique), desc="ingest interactions", unit="row", disable=not progress, leave=False)

    def writer() -> None:
        try:
            while (batch := scheduler.take()) is not None:
                block, statement, rows = batch
                try:  # check runs before every attempt: a batch the driver retries after the lock is lost never commits
                    counters, record = graph.write_returning(statement, before_=check, rows=rows)
                finally:
                    scheduler.release(block)
                sent = sum(len(r["item"]) for r in rows)
                with lock:
                    totals["relationships_created"] += counters.relationships_created
                    totals["properties_set"] += counters.properties_set
                    totals["not_written"] += sent - int(record.get("written") or 0)
                    totals["resplit"] += int(record.get("resplit") or 0)
                bar.update(sent)
        except BaseException:
            scheduler.fail()
            raise

    with ThreadPoolExecutor(max_workers=parts) as pool:
        futures = [pool.submit(writer) for _ in range(parts)]
        try:
            for batch in cut_batches(unique.values(), known, parts, size):
                if not scheduler.put(batch):
                    break  # a writer failed: its error is raised below
        except BaseException:
            scheduler.fail()
            raise
        finally:
            scheduler.close()
        try:  # where the main thread waits out the load: a signal (SystemExit, Ctrl-C) lands here
            for f in futures:
                f.result()
        except BaseException:
            scheduler.fail()  # the writers stop after the batch in flight, not when the queue is empty
            raise
    bar.close()
    return {"sent": len(unique), "new_users": len(users) - len(known), "known_users": len(known), **totals}

