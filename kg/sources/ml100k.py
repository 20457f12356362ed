"""MovieLens 100K (``u.data``, ``u.item`` latin-1 with 19 genre flags, ``u.user``), read through the
packaged mapping ``kg/mappings/ml-100k.toml``: ratings are ``rating`` interactions with unix
timestamps, genres become ``genre:<name>`` entities linked with relation ``genre``; users' gender and
occupation become ``gender:<v>`` / ``occupation:<v>`` entities linked with those relations."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..governance import KnownIds, LoadResult
from .tabular import read_tabular

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.config import IngestConfig

MAPPING = Path(__file__).resolve().parents[1] / "mappings" / "ml-100k.toml"


def read_ml100k(data_dir: str | Path, cfg: "IngestConfig | None" = None, *, mapping: str | Path | dict | None = None,
                limit: int | None = None, known: "KnownIds | None" = None) -> LoadResult:
    """Read an ml-100k directory through governance (packaged mapping unless one is given)."""
    return read_tabular(data_dir, mapping or MAPPING, cfg, limit=limit, known=known)
