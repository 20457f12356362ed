"""KGAT format: ``train.txt``/``test.txt`` (``user item item ...``), ``kg_final.txt`` (``h r t``),
``item_list.txt`` (``org_id remap_id freebase_id``), ``entity_list.txt`` (``org_id remap_id``),
``relation_list.txt`` (``org_id remap_id``).

The given split is kept. Items are ids ``0..n_items-1`` and KGAT numbers item ``i`` as entity ``i``,
so each item is linked to entity ``kg:i`` with relation ``same_as``: each line of ``item_list.txt``
links its item, and without that list each item of the pairs whose entity ``kg_final.txt`` names is
linked (counted as the source ``kg_final.txt#items``, at the line naming the entity first). Relation
names are the last path segment of the relation's original id (``http://.../film.film.genre`` ->
``film.film.genre``) when that is a valid name, else the whole IRI, or ``r<id>`` without
``relation_list.txt``; a triple whose relation id that list lacks is quarantined.
Ids are non-negative integers: a line with another token (a header such as ``head relation tail``)
is quarantined with its reason.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..governance import NAME_RE, Governor, KnownIds, LoadResult
from .lightgcn import (check_data_dir, feed_lightgcn, index_id, is_index, list_line_problem, list_lines, not_index,
                       quarantine_to, token_lines)

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.config import IngestConfig

logger = logging.getLogger(__name__)




def relation_name(org_id: str) -> str:
    """Relation name from an original relation id (last URL path segment, ``#`` fragment dropped)."""
    return org_id.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def relation_names(rel_list: Path) -> dict[str, str]:
    """Remapped relation id -> name from ``relation_list.txt``: the IRI's last segment, or the whole
    IRI where two relations share that segment (``schema.org/name`` and ``foaf/0.1/name`` stay two).

    Raises:
        ValueError: a malformed line, or one id given two IRIs (with file and line).
    """
    iris: dict[str, str] = {}
    for lineno, tokens, raw in list_lines(rel_list):
        if len(tokens) < 2 or not is_index(tokens[1]):
            raise ValueError(f"{rel_list}:{lineno}: expected `org_id remap_id`, got {raw!r}")
        rid = index_id(tokens[1])
        if iris.setdefault(rid, tokens[0]) != tokens[0]:
            raise ValueError(f"{rel_list}:{lineno}: relation {rid} is named twice "
                             f"({iris[rid]!r} and {tokens[0]!r})")
    short = {rid: name if NAME_RE.fullmatch(name := relation_name(iri)) else iri  # name%28s%29: the IRI
             for rid, iri in iris.items()}
    iris_of: dict[str, set[str]] = {}
    for rid, name in short.items():
        iris_of.setdefault(name, set()).add(iris[rid])
    return {rid: name if len(iris_of[name]) == 1 else iris[rid] for rid, name in short.items()}


def read_kgat(data_dir: str | Path, cfg: "IngestConfig | None" = None, *, kind: str = "interact",
              limit: int | None = None, known: "KnownIds | None" = None) -> LoadResult:
    """Read a KGAT dataset directory through governance.

    Args:
        data_dir: Directory with the KGAT files (``kg_final.txt`` and the lists are optional).
        cfg: Ingest settings.
        kind: Interaction kind given to every pair.
        limit: Read at most this many lines per file.
        known: the target graph's ids lookup (see :class:`~kg.governance.Governor`).

    Raises:
        FileNotFoundError: ``data_dir`` is not a directory holding ``train.txt`` or ``test.txt``.
    """
    data_dir = Path(data_dir)
    check_data_dir(data_dir, "KGAT")
    gov = Governor(cfg, known)
    item_list = data_dir / "item_list.txt"
    if item_list.is_file():
        # whole, even with a limit: the sample's ids resolve
        for lineno, tokens, _ in gov.rows_of(item_list.name, list_lines(item_list, quarantine_to(gov, item_list.name))):
            if bad := list_line_problem(tokens, "org_id remap_id [freebase_id]"):
                gov.quarantine(item_list.name, lineno, bad, " ".join(tokens))
                continue
            props = {"org_id": tokens[0]}
            item = index_id(tokens[1])
            gov.add_item(item_list.name, lineno, tokens, id=item, props=props)
            gov.add_entity(item_list.name, lineno, tokens, id=f"kg:{item}", type="kg",
                           name=tokens[2] if len(tokens) > 2 else tokens[0])
            gov.add_item_entity(item_list.name, lineno, tokens, item=item, entity=f"kg:{item}", relation="same_as")
    entity_list = data_dir / "entity_list.txt"
    if entity_list.is_file():
        for lineno, tokens, _ in gov.rows_of(entity_list.name,
                                             list_lines(entity_list, quarantine_to(gov, entity_list.name))):
            if bad := list_line_problem(tokens):
                gov.quarantine(entity_list.name, lineno, bad, " ".join(tokens))
                continue
            gov.add_entity(entity_list.name, lineno, tokens, id=f"kg:{index_id(tokens[1])}", type="kg",
                           name=tokens[0])
    relations: dict[str, str] = {}
    rel_list = data_dir / "relation_list.txt"
    if rel_list.is_file():  # a lookup, not graph rows: the bad lines are errors, not quarantine
        relations = relation_names(rel_list)
    kg = data_dir / "kg_final.txt"
    first_named: dict[str, tuple[int, list[str]]] = {}  # entity -> the kg_final line that names it first
    if kg.is_file():
        for lineno, tokens, raw in gov.rows_of(kg.name, token_lines(kg, limit, quarantine_to(gov, kg.name)),
                                               expect_rows=limit != 0):
            if len(tokens) != 3:
                gov.quarantine(kg.name, lineno, f"expected 3 fields, got {len(tokens)}", raw)
                continue
            if bad := not_index(tokens, ("head", "relation", "tail")):  # a header line, too
                gov.quarantine(kg.name, lineno, bad, raw)
                continue
            h, r, t = map(index_id, tokens)
            if rel_list.is_file() and r not in relations:  # an r<id> name would stand for a relation the list lacks
                gov.quarantine(kg.name, lineno, f"relation id {r} not in {rel_list.name}", raw)
                continue
            if gov.add_triple(kg.name, lineno, tokens, head=f"kg:{h}", relation=relations.get(r, f"r{r}"),
                              tail=f"kg:{t}"):
                for entity in (f"kg:{h}", f"kg:{t}"):
                    first_named.setdefault(entity, (lineno, tokens))
    feed_lightgcn(gov, data_dir, kind=kind, limit=limit, create=not item_list.is_file())
    if not item_list.is_file() and first_named:  # item i is entity i, as the list would have said
        for item in sorted(gov.named_ids("items"), key=lambda i: (len(i), i)):
            if (named := first_named.get(f"kg:{item}")) is not None:
                gov.add_item_entity(f"{kg.name}#items", *named, item=item, entity=f"kg:{item}", relation="same_as")
    return gov.finish()
