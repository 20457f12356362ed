"""Every Cypher statement kgrec runs, one ``.cypher`` file each, loaded by name.

Statements take all values as parameters; nothing is ever formatted into them.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """Return the text of ``cypher/<name>.cypher`` (``name`` like ``"ingest/merge_users"``).

    Raises:
        FileNotFoundError: no statement of that name.
    """
    path = resources.files(__package__).joinpath(f"{name}.cypher")
    if not path.is_file():
        raise FileNotFoundError(f"no Cypher statement named {name!r} (looked for {path})")
    return path.read_text(encoding="utf-8").strip()


def statements(text: str) -> list[str]:
    """Split a multi-statement file on ``;`` lines (used for schema files)."""
    parts = [p.strip() for p in text.split(";")]
    return [p for p in parts if p and not all(l.strip().startswith("//") for l in p.splitlines())]
