"""Every Cypher statement kgrec runs, one ``.cypher`` file each, loaded by name.

Statements take all values as parameters; nothing is ever formatted into them.
"""
from __future__ import annotations

import re
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
    """Split a multi-statement file (a schema file) into its statements, each ended by a ``;`` at
    the end of a line (no comment after it on that line); whole-line ``//`` comments are dropped
    first, so a ``;`` in one ends nothing."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    return [part.strip() for part in re.split(r";[ \t]*$", code, flags=re.MULTILINE) if part.strip()]
