"""LightGCN text format: ``train.txt`` / ``test.txt`` with lines ``user item item ...``.

Ids are already remapped to 0-based integers. The given split is kept (``split`` on each row).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from ..governance import fits_int64
from ..records import GraphRecords, InteractionRow
from ..snapshot import Interactions, Snapshot
from .tabular import decoded_lines

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.config import IngestConfig

    from ..governance import Governor, KnownIds, LoadResult


def token_lines(path: Path, limit: int | None = None,
                on_bad: Callable[[int, str, str], None] | None = None) -> Iterator[tuple[int, list[str], str]]:
    """Yield ``(line_number, tokens, raw_line)`` for each non-blank line of a whitespace-separated
    UTF-8 file (a leading BOM dropped), at most ``limit`` of them (blank lines do not count).

    A line with bytes that are not UTF-8 is not yielded: ``on_bad(line_number, raw_line, reason)``
    gets it (the raw line with those bytes replaced, for a quarantine entry); without ``on_bad`` it
    is an error.

    Raises:
        ValueError: a line is not UTF-8 and no ``on_bad`` was given.
    """
    n = 0
    for lineno, line, reason in decoded_lines(Path(path), "utf-8", cr_ends_lines=True):  # ids: a CR is no data
        tokens = line.split()
        if not tokens:
            continue
        if limit is not None and n >= limit:
            break
        n += 1
        if reason is None:
            yield lineno, tokens, line
        elif on_bad is None:
            raise ValueError(f"{path}:{lineno}: {reason}")
        else:
            on_bad(lineno, line, reason)


def list_lines(path: Path, on_bad: Callable[[int, str, str], None] | None = None
               ) -> Iterator[tuple[int, list[str], str]]:
    """:func:`token_lines` of an id list (``org_id remap_id ...``), less its header line if it has one."""
    first = True
    for lineno, tokens, raw in token_lines(path, on_bad=on_bad):
        if first and tokens[0] == "org_id":
            first = False
            continue
        first = False
        yield lineno, tokens, raw


def quarantine_to(gov: "Governor", fname: str) -> Callable[[int, str, str], None]:
    """An ``on_bad`` for :func:`token_lines` that quarantines the line in ``fname``'s report."""
    return lambda lineno, raw, reason: gov.quarantine(fname, lineno, reason, raw)


def is_index(token: str) -> bool:
    """Whether ``token`` is a non-negative 64-bit integer in ASCII digits (``²`` and ``٣`` are not)."""
    digits = token.lstrip("0")
    return token.isascii() and token.isdigit() and len(digits) <= 19 and fits_int64(int(digits or "0"))


def not_index(tokens: list[str], names: tuple[str, ...]) -> str | None:
    """The quarantine reason for the first of ``tokens`` (named by ``names``) that is not an index,
    or ``None``: a header line of other words (``uid remap``, ``head relation tail``) is no row."""
    for name, token in zip(names, tokens):
        if not is_index(token):
            return f"{name} is not a non-negative integer id: {token[:40]!r}"
    return None


def list_line_problem(tokens: list[str], layout: str = "org_id remap_id") -> str | None:
    """The quarantine reason for an id-list line (``org_id remap_id ...``), or ``None``: too few
    fields, or a ``remap_id`` that is not an index (a header of other words)."""
    return f"expected {layout}" if len(tokens) < 2 else not_index(tokens[1:2], ("remap_id",))


def index_id(token: str) -> str:
    """A remapped id as its integer's text (``07`` is user 7, as the LightGCN code reads it), or
    ``token`` unchanged when it is not an index."""
    return str(int(token)) if is_index(token) else token


def iter_pairs(path: Path) -> Iterator[tuple[int, int, int]]:
    """Yield ``(line_number, user, item)`` for every pair in one LightGCN file.

    Raises:
        ValueError: a token is not a non-negative integer (with file and line).
    """
    with Path(path).open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            tokens = line.split()
            if not tokens:
                continue
            bad = next((t for t in tokens if not is_index(t)), None)
            if bad is not None:
                raise ValueError(f"{path}:{lineno}: not a non-negative integer id in ASCII digits: {bad[:40]!r}")
            ids = [int(t) for t in tokens]
            user = ids[0]
            for item in ids[1:]:
                yield lineno, user, item


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    users: list[int] = []
    items: list[int] = []
    for _, u, i in iter_pairs(path):
        users.append(u)
        items.append(i)
    return np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)


def snapshot_from_lightgcn(data_dir: str | Path, name: str | None = None) -> Snapshot:
    """Read a LightGCN split straight into a :class:`Snapshot` (benchmark fast path; the
    product path ingests into Neo4j and exports). Internal ids equal the file's ids."""
    data_dir = Path(data_dir)
    tr_u, tr_i = _read_arrays(data_dir / "train.txt")
    te_u, te_i = _read_arrays(data_dir / "test.txt")
    if not len(tr_u):  # nothing to size the id space by, nor to train on
        raise ValueError(f"{data_dir / 'train.txt'} holds no (user, item) pair")
    n_users = int(max(tr_u.max(), te_u.max() if len(te_u) else 0)) + 1
    n_items = int(max(tr_i.max(), te_i.max() if len(te_i) else 0)) + 1

    def inter(u: np.ndarray, i: np.ndarray) -> Interactions:
        return Interactions(u, i, np.ones(len(u), dtype=np.float32), np.zeros(len(u), dtype=np.int64),
                            np.zeros(len(u), dtype=np.int16))

    return Snapshot(
        ids={"user": [str(u) for u in range(n_users)], "item": [str(i) for i in range(n_items)],
             "query": [], "entity": []},
        entity_types=[], item_titles=[""] * n_items, item_descriptions=[""] * n_items,
        query_texts=[], entity_names=[],
        splits={"train": inter(tr_u, tr_i), "valid": Interactions.empty(), "test": inter(te_u, te_i)},
        kinds=["interact"], meta={"name": name or data_dir.name, "source": "lightgcn", "split": "given"},
    )


def read_lightgcn(data_dir: str | Path, kind: str = "interact") -> GraphRecords:
    """Read a LightGCN split as canonical rows (users and items are created from the pairs)."""
    data_dir = Path(data_dir)
    records = GraphRecords()
    users: set[str] = set()
    items: set[str] = set()
    for split, fname in (("train", "train.txt"), ("test", "test.txt")):
        for _, u, i in iter_pairs(data_dir / fname):
            su, si = str(u), str(i)
            users.add(su)
            items.add(si)
            records.interactions.append(InteractionRow(user=su, item=si, kind=kind, weight=1.0, ts=0, split=split))
    records.users = [{"id": u} for u in sorted(users, key=int)]
    records.items = [{"id": i, "title": "", "description": ""} for i in sorted(items, key=int)]
    return records


SPLIT_FILES = ("train.txt", "test.txt")


def check_data_dir(data_dir: Path, fmt: str) -> None:
    """Refuse a path that holds no split files: a wrong path is an error, not an empty load that
    reconciles.

    Raises:
        FileNotFoundError: ``data_dir`` is a file, does not exist, or has neither ``train.txt`` nor
            ``test.txt``.
    """
    if data_dir.is_file():
        raise FileNotFoundError(f"{data_dir} is a file: pass the {fmt} directory that holds it ({data_dir.parent})")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such {fmt} directory")
    if not any((data_dir / f).is_file() for f in SPLIT_FILES):
        raise FileNotFoundError(f"{data_dir}: holds neither of the {fmt} split files {' nor '.join(SPLIT_FILES)}")


def feed_lightgcn(gov: "Governor", data_dir: str | Path, *, kind: str = "interact", limit: int | None = None,
                  create: bool = True) -> None:
    """Feed a LightGCN/KGAT split into a governor, one row per (user, item) pair.

    ``user_list.txt`` (``org_id remap_id``) gives the users, with ``org_id`` as a property, when
    present; ``item_list.txt`` is read by the caller (KGAT) or here (LightGCN) when ``create`` is true.
    A list line whose ``remap_id`` is not an integer (a header other than ``org_id remap_id``) is quarantined.
    Users/items without list files are declared from the pairs.

    Args:
        gov: The governor collecting rows.
        data_dir: Directory with ``train.txt`` / ``test.txt``.
        kind: Interaction kind of every pair.
        limit: Read at most this many (non-blank) lines of ``train.txt`` and ``test.txt`` each; the id
            lists are read whole, so that the sampled pairs' users and items are known.
        create: Read ``item_list.txt`` here (else the caller did).
    """
    data_dir = Path(data_dir)
    lists = [("user_list.txt", "users")] + ([("item_list.txt", "items")] if create else [])
    have = set()
    listed_users: set[str] = set()
    for fname, node_kind in lists:
        path = data_dir / fname
        if not path.is_file():
            continue
        have.add(node_kind)
        # whole, even with a limit: the sample's ids resolve
        for lineno, tokens, raw in gov.rows_of(fname, list_lines(path, quarantine_to(gov, fname))):
            if bad := list_line_problem(tokens):
                gov.quarantine(fname, lineno, bad, raw)
            elif node_kind == "users":
                if gov.add_user(fname, lineno, tokens, id=index_id(tokens[1]), props={"org_id": tokens[0]}):
                    listed_users.add(index_id(tokens[1]))
            else:
                gov.add_item(fname, lineno, tokens, id=index_id(tokens[1]), props={"org_id": tokens[0]})
    # the pairs' users and items without a list file: created with a pair that loads, not a quarantined one
    creates = [k for k in ("users", "items") if k not in have and (create or k == "users")]
    for split, fname in zip(("train", "test"), SPLIT_FILES):
        path = data_dir / fname
        if not path.is_file():  # one of the two may be absent (check_data_dir: not both)
            continue
        for lineno, tokens, raw in gov.rows_of(fname, token_lines(path, limit, quarantine_to(gov, fname)),
                                               expect_rows=limit != 0):
            user = index_id(tokens[0])
            if len(tokens) == 1:
                if not is_index(user):
                    gov.quarantine(fname, lineno, f"not a non-negative integer id: {user!r}", raw)
                elif "users" not in have:
                    gov.declare("users", user)  # a user alone on a line has no items in this split, but exists
                elif user not in listed_users:  # known to the graph, created, or quarantined, as in a pair
                    gov.require("users", user, fname, lineno, raw, f"unknown user {user!r} (not in user_list.txt)")
            for item in map(index_id, tokens[1:]):
                if not (is_index(user) and is_index(item)):
                    gov.quarantine(fname, lineno, f"not a non-negative integer id: {user!r} {item!r}", raw)
                    continue
                gov.add_interaction(fname, lineno, [user, item], user=user, item=item, kind=kind,
                                    weight=1.0, ts=0, split=split, creates=creates)


def read_lightgcn_governed(data_dir: str | Path, cfg: "IngestConfig | None" = None, *,
                           kind: str = "interact", limit: int | None = None,
                           known: "KnownIds | None" = None) -> "LoadResult":
    """Read a LightGCN split through governance (the given train/test split is kept).

    Args:
        data_dir: Directory with ``train.txt``, ``test.txt`` and optionally ``user_list.txt`` /
            ``item_list.txt``.
        cfg: Ingest settings.
        kind: Interaction kind of every pair.
        limit: Read at most this many (non-blank) lines of each split file; id lists are read whole.
        known: the target graph's ids lookup (see :class:`~kg.governance.Governor`).

    Raises:
        FileNotFoundError: ``data_dir`` is not a directory holding ``train.txt`` or ``test.txt``.
    """
    from ..governance import Governor

    check_data_dir(Path(data_dir), "LightGCN")
    gov = Governor(cfg, known)
    feed_lightgcn(gov, data_dir, kind=kind, limit=limit)
    return gov.finish()
