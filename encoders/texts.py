"""The text of each snapshot node, built from the templates in :class:`kgrec.config.EncoderConfig`."""
from __future__ import annotations

import re
import string
from typing import Any, Mapping

from encoders.base import normalize_text

ITEM_FIELDS = ("title", "description", "attributes")
QUERY_FIELDS = ("text",)
ENTITY_FIELDS = ("name",)
_SPACES = re.compile(r"\s+")
_DOTS = re.compile(r"\.+")
_SEPARATORS = " .,;:|/-"  # what an empty field at the start (or, but for a full stop, the end) leaves


def check_template(template: str, allowed: tuple[str, ...]) -> None:
    """Check that a template only uses the plain fields ``allowed``.

    Raises:
        ValueError: an unknown field, a positional field or attribute/index access.
    """
    for _, field_name, spec, _ in string.Formatter().parse(template):
        if field_name is None:
            continue
        if field_name not in allowed or "{" in (spec or ""):
            raise ValueError(f"template {template!r} uses {{{field_name}{':' + spec if spec else ''}}}; allowed "
                             "fields: " + ", ".join("{" + f + "}" for f in allowed))


def fill(template: str, values: Mapping[str, Any]) -> str:
    """Fill a template with normalised values; ``""`` when every value is empty.

    Runs of whitespace collapse to one space, and the template's separators that an empty field
    leaves before the first or after the last non-empty field go (``"{title}. {description}
    {attributes}"`` without a title is ``"Rock, Pop"``, not ``". Rock, Pop"``), but for one full stop
    after the last (or the first run of them, an ellipsis) when they held one and it does not end in
    one already (a title alone is ``"Up."``; ``"{title}. {description}. {attributes}"`` with only a
    title too, not ``"Up. ."``). The values
    themselves and the rest of the template stay as written (a title ``"...And Justice"`` keeps
    its dots).
    """
    clean = {k: normalize_text(v) for k, v in values.items()}
    formatter = string.Formatter()
    pieces: list[tuple[str, bool, bool]] = []  # (text, is a field, is a non-empty field)
    for literal, name, spec, conversion in formatter.parse(template):
        pieces.append((literal, False, False))
        if name is not None:
            text = formatter.format_field(formatter.convert_field(clean[name], conversion), spec or "")
            pieces.append((text, True, bool(clean[name])))
    filled = [i for i, (_, _, non_empty) in enumerate(pieces) if non_empty]
    if not filled:
        return ""
    first, last = filled[0], filled[-1]
    head = "".join(t for t, _, _ in pieces[:first])
    if any(is_field for _, is_field, _ in pieces[:first]):  # an empty field before the first: its separators go
        head = head.lstrip(_SEPARATORS)
    body = "".join(t for t, _, _ in pieces[first:last + 1])
    tail = "".join(t for t, _, _ in pieces[last + 1:])
    if any(is_field for _, is_field, _ in pieces[last + 1:]):  # their first full stop (or "...") stays
        kept = tail.rstrip(_SEPARATORS)
        stop = _DOTS.search(tail[len(kept):])
        tail = kept + (stop.group() if stop and not (body + kept).rstrip().endswith(".") else "")
    return _SPACES.sub(" ", head + body + tail).strip()


def node_texts(snapshot: Any, cfg: Any) -> dict[str, list[str]]:
    """The text of every item, query and entity of a snapshot.

    Items use ``cfg.item_template`` with ``{title}``, ``{description}`` and ``{attributes}`` (the
    names of the entities an item links to, de-duplicated and joined with ``", "``); queries use
    ``cfg.query_template`` with ``{text}``; entities use ``cfg.entity_template`` with ``{name}``.
    A node whose fields are all empty gets ``""``.

    Args:
        snapshot: a :class:`kg.snapshot.Snapshot`.
        cfg: an :class:`kgrec.config.EncoderConfig` (only the templates are read).

    Returns:
        ``{"item": [...], "query": [...], "entity": [...]}``, aligned with the snapshot's ids.

    Raises:
        ValueError: a template uses an unknown field.
    """
    check_template(cfg.item_template, ITEM_FIELDS)
    check_template(cfg.query_template, QUERY_FIELDS)
    check_template(cfg.entity_template, ENTITY_FIELDS)
    attributes = snapshot.item_attribute_names()
    items = [
        fill(cfg.item_template, {"title": title, "description": desc,
                                 "attributes": ", ".join(dict.fromkeys(n for n in map(normalize_text, attrs) if n))})
        for title, desc, attrs in zip(snapshot.item_titles, snapshot.item_descriptions, attributes)
    ]
    queries = [fill(cfg.query_template, {"text": t}) for t in snapshot.query_texts]
    entities = [fill(cfg.entity_template, {"name": n}) for n in snapshot.entity_names]
    return {"item": items, "query": queries, "entity": entities}
