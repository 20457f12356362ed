"""Knowledge-graph triples (``head relation tail``) with an item -> entity link file and user-user
friends, as in the Last.fm + KGCN data (``kg.txt``, ``item_index2entity_id.txt``, ``user_friends.dat``,
``user_artists.dat``, ``artists.dat``, ``tags.dat``).

The Last.fm layout is described by the packaged mapping ``kg/mappings/lastfm.toml`` and read by the
tabular reader; :func:`read_triples` builds the same kind of mapping for other triple files.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..governance import KnownIds, LoadResult
from .tabular import read_tabular

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.config import IngestConfig

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"


def read_lastfm(data_dir: str | Path, cfg: "IngestConfig | None" = None, *, mapping: str | Path | dict | None = None,
                limit: int | None = None, known: "KnownIds | None" = None) -> LoadResult:
    """Read the Last.fm + KG dataset directory (packaged mapping unless one is given)."""
    return read_tabular(data_dir, mapping or MAPPINGS / "lastfm.toml", cfg, limit=limit, known=known)


def read_triples(data_dir: str | Path, cfg: "IngestConfig | None" = None, *, kg_file: str = "kg.txt",
                 link_file: str | None = None, friends_file: str | None = None, delimiter: str = "\t",
                 entity_prefix: str = "kg:", link_relation: str = "same_as", limit: int | None = None,
                 known: "KnownIds | None" = None) -> LoadResult:
    """Read headerless triple / link / friend files.

    Args:
        data_dir: Directory of the files.
        cfg: Ingest settings.
        kg_file: ``head relation tail`` lines.
        link_file: ``item entity`` lines (items must exist or be created per policy).
        friends_file: ``user friend`` lines.
        delimiter: Field separator.
        entity_prefix: Prefix of KG entity ids.
        link_relation: Relation name of item -> entity links.
        limit: Read at most this many lines per file.
        known: the target graph's ids lookup (see :class:`~kg.governance.Governor`).
    """
    base = {"delimiter": delimiter, "header": False, "quoting": "none"}
    files = [{**base, "path": kg_file, "role": "triples", "columns": ["h", "r", "t"], "head": "h",
              "relation": "r", "tail": "t", "entity_prefix": entity_prefix}]
    if link_file:
        files.append({**base, "path": link_file, "role": "item_entities", "columns": ["i", "e"], "item": "i",
                      "entity": "e", "entity_prefix": entity_prefix, "relation_value": link_relation})
    if friends_file:
        files.append({**base, "path": friends_file, "role": "friends", "columns": ["u", "f"], "user": "u",
                      "friend": "f"})
    return read_tabular(data_dir, {"files": files}, cfg, limit=limit, known=known)
