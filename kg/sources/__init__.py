"""Readers for source formats. Each returns canonical rows (kg.records) plus quarantined rows, as a
:class:`kg.governance.LoadResult`; :func:`load_source` picks one by format name."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.config import IngestConfig

    from ..governance import KnownIds, LoadResult

FORMATS = ("tabular", "recbole", "lightgcn", "kgat", "lastfm", "triples", "ml100k")
MAPPED_FORMATS = ("tabular", "lastfm", "ml100k")  # those read through a mapping (lastfm, ml100k: a packaged one)
PACKAGED_FORMATS = ("lastfm", "ml100k")  # one dataset each, read through kgrec's packaged mapping
# whole datasets that number their users and items themselves (a graph records which it holds:
# kg.ingest.check_dataset); tabular and triples load your own rows into your own graph
DATASET_FORMATS = ("recbole", "lightgcn", "kgat", *PACKAGED_FORMATS)


def load_source(format: str, path: str | Path, mapping: str | Path | dict | None = None,
                cfg: "IngestConfig | None" = None, *, limit: int | None = None,
                known: "KnownIds | None" = None) -> "LoadResult":
    """Read a source through governance.

    Args:
        format: One of :data:`FORMATS`.
        path: Data directory (or a single file for ``tabular`` / ``recbole``).
        mapping: Mapping TOML or dict; required for ``tabular``, optional override for ``lastfm`` and
            ``ml100k``, ignored otherwise.
        cfg: Ingest settings (unknown-reference policy, text limit).
        limit: Read at most this many data lines per file (slices, tests).
        known: ``known(kind, ids)``: which ids the target graph already holds, so references to them
            are accepted without a row (``kg.ingest.existing_ids``); ``None``: this load only.

    Returns:
        The governed :class:`~kg.governance.LoadResult`.

    Raises:
        ValueError: unknown format, or ``tabular`` without a mapping.
        FileNotFoundError: the path does not exist or holds none of the format's files.
    """
    path = Path(path)
    if format == "tabular":
        if mapping is None:
            raise ValueError("format 'tabular' needs a mapping (a TOML file, `--mapping` on the command line, "
                             "or a dict)")
        from .tabular import read_tabular

        return read_tabular(path, mapping, cfg, limit=limit, known=known)
    if format == "recbole":
        from .recbole import read_recbole

        return read_recbole(path, cfg, limit=limit, known=known)
    if format == "lightgcn":
        from .lightgcn import read_lightgcn_governed

        return read_lightgcn_governed(path, cfg, limit=limit, known=known)
    if format == "kgat":
        from .kgat import read_kgat

        return read_kgat(path, cfg, limit=limit, known=known)
    if format == "lastfm":
        from .triples import read_lastfm

        return read_lastfm(path, cfg, mapping=mapping, limit=limit, known=known)
    if format == "triples":
        from .triples import read_triples

        link = "item_index2entity_id.txt"
        return read_triples(path, cfg, link_file=link if (path / link).is_file() else None, limit=limit, known=known)
    if format == "ml100k":
        from .ml100k import read_ml100k

        return read_ml100k(path, cfg, mapping=mapping, limit=limit, known=known)
    raise ValueError(f"unknown source format {format!r}; expected one of {FORMATS}")
