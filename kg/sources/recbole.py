"""RecBole atomic files: ``<name>.inter``, ``.user``, ``.item``, ``.kg``, ``.link``.

Each file is tab separated with a header of ``field:type`` tokens (types ``token``, ``token_seq``,
``float``, ``float_seq``). ``token_seq`` fields are split on spaces. Fields are recognised by their
RecBole names: ``user_id``, ``item_id``, ``rating`` (else ``label``/``weight``), ``timestamp``
(a ``label`` below 1 is RecBole's negative feedback: kgrec learns from positive events, so those
rows are quarantined as "weight 0 is below 1");
``.user`` ``token`` and ``float`` fields become user properties (``age``, ``gender``: strings and
numbers, not entities); ``.item`` ``title``/``movie_title``/``name`` is the title, other
``token``/``token_seq`` fields become attributes (relation = field name), ``float`` fields
properties. ``float_seq`` fields (and ``token_seq`` ones of ``.user``) are left out, with a warning
naming them. ``.kg`` has ``head_id``,
``relation_id``, ``tail_id``; ``.link`` has ``item_id`` and ``entity_id`` (relation ``same_as``).
KG entity ids get the prefix ``kg:``. RecBole's pre-split benchmark files
``<name>.train.inter``, ``<name>.valid.inter`` and ``<name>.test.inter`` keep their split (and are
read instead of ``<name>.inter`` when both are there; valid or test without train is refused).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..governance import PROP_RE, RESERVED_PROPS, Governor, KnownIds, LoadResult
from .tabular import MappingError, decoded_lines, feed_file, refuse_utf16

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.config import IngestConfig

logger = logging.getLogger(__name__)

SUFFIXES = (".user", ".item", ".kg", ".link", ".inter")  # nodes first, then edges
TITLE_FIELDS = ("title", "movie_title", "name", "item_name")
WEIGHT_FIELDS = ("rating", "label", "weight", "score")
SPLIT_FILES = ("train", "valid", "test")  # <name>.<split>.inter: RecBole's pre-split benchmark files


def _split_of(path: Path) -> str | None:
    """``train`` for ``ml-100k.train.inter`` (a pre-split file); None for any other file."""
    base, _, split = path.stem.rpartition(".")
    return split if path.suffix == ".inter" and base and split in SPLIT_FILES else None


def _dataset_name(path: Path) -> str:
    """``ml-100k`` for ``ml-100k.inter`` and for ``ml-100k.train.inter`` alike."""
    split = _split_of(path)
    return path.stem[: -len(split) - 1] if split else path.stem


def parse_header(path: Path) -> list[tuple[str, str]]:
    """``[(field, type), ...]`` from a RecBole header line: the first line that is not blank, the
    line :func:`~kg.sources.tabular.feed_file` then skips as the header.

    Raises:
        MappingError: the file has no header line, a token is not ``field:type``, or a field is
            named twice (one would hide the other).
    """
    refuse_utf16(path, "utf-8")  # else its header's tokens would be the error, with NULs between letters
    first = next(decoded_lines(path, "utf-8"), None)  # BOM and CR dropped; bad bytes replaced
    if first is None:
        raise MappingError(f"{path.name}: no header line (the file is empty)")
    line = first[1]
    out = []
    for token in line.split("\t"):
        name, sep, typ = token.strip().partition(":")
        if not sep or typ not in ("token", "token_seq", "float", "float_seq"):
            raise MappingError(f"{path.name}: header token {token!r} is not field:type "
                               "(type token, token_seq, float or float_seq)")
        if any(name == seen for seen, _ in out):
            raise MappingError(f"{path.name}: header names field {name!r} twice; one would hide the other")
        out.append((name, typ))
    return out


def _spec_for(path: Path, header: list[tuple[str, str]]) -> dict:
    cols = [f"{n}:{t}" for n, t in header]
    by_name = {n: f"{n}:{t}" for n, t in header}
    types = dict(header)
    spec: dict = {"path": path.name, "delimiter": "\t", "header": True, "quoting": "none"}
    suffix = path.suffix

    def need(name: str) -> str:
        if name not in by_name:
            raise MappingError(f"{path.name}: required field {name!r} missing from header {cols}")
        return by_name[name]

    if suffix == ".inter":
        spec.update(role="interactions", user=need("user_id"), item=need("item_id"))
        for w in WEIGHT_FIELDS:
            if w in by_name:
                spec["weight"] = by_name[w]
                spec["kind_value"] = "rating" if w == "rating" else "interact"
                if w == "label":
                    spec["weight_range"] = [1, float("inf")]
                break
        else:
            spec["kind_value"] = "interact"
        if "timestamp" in by_name:
            spec["timestamp"] = by_name["timestamp"]
    elif suffix == ".user":
        spec.update(role="users", id=need("user_id"))
        names = [n for n in by_name if n != "user_id" and types[n] in ("token", "float")
                 and PROP_RE.fullmatch(n) and n not in RESERVED_PROPS]
        spec["props"] = {by_name[n]: ("float" if types[n] == "float" else "str") for n in names}
        spec["prop_names"] = {by_name[n]: n for n in names}
    elif suffix == ".item":
        spec.update(role="items", id=need("item_id"))
        title = next((t for t in TITLE_FIELDS if t in by_name), None)
        if title:
            spec["title"] = by_name[title]
        attrs, props = [], {}
        for n, t in header:
            if n in ("item_id", title):
                continue
            if t in ("token", "token_seq"):
                attrs.append({"column": by_name[n], "relation": n, "entity_type": n,
                              **({"separator": " "} if t == "token_seq" else {})})
            elif t == "float" and PROP_RE.fullmatch(n) and n not in RESERVED_PROPS:
                props[by_name[n]] = "float"
        spec["attributes"] = attrs
        spec["props"] = props
        spec["prop_names"] = {col: col.split(":", 1)[0] for col in props}
    elif suffix == ".kg":
        spec.update(role="triples", head=need("head_id"), relation=need("relation_id"), tail=need("tail_id"),
                    entity_prefix="kg:")
    elif suffix == ".link":
        spec.update(role="item_entities", item=need("item_id"), entity=need("entity_id"),
                    relation_value="same_as", entity_prefix="kg:")
    used = set(_used_field_names(spec))
    ignored = [n for n, _ in header if by_name[n] not in used]
    if ignored:
        logger.warning("%s: ignoring field(s) %s, which kgrec maps to nothing in the graph (see the module "
                       "docstring for what each file's fields become)", path.name, ignored)
    return spec


def _used_field_names(spec: dict) -> list[str]:
    """The header columns a reader spec maps."""
    cols = [v for k, v in spec.items() if k in ("user", "item", "weight", "timestamp", "id", "title", "head",
                                                 "relation", "tail", "entity") and isinstance(v, str)]
    return cols + list(spec.get("props") or {}) + [a["column"] for a in spec.get("attributes") or []]


def read_recbole(path: str | Path, cfg: "IngestConfig | None" = None, *, name: str | None = None,
                 limit: int | None = None, known: "KnownIds | None" = None) -> LoadResult:
    """Read a RecBole dataset directory (or one atomic file) through governance.

    Args:
        path: Directory holding ``<name>.<suffix>`` files, or a single atomic file.
        cfg: Ingest settings.
        name: Dataset name (default: the directory name, else the only name present).
        limit: Read at most this many data lines per file.
        known: the target graph's ids lookup (see :class:`~kg.governance.Governor`).

    Raises:
        FileNotFoundError: no atomic file found.
        MappingError: a header is malformed or lacks a required field.
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    else:
        found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
        if name is None:
            names = {_dataset_name(p) for p in found}
            name = path.name if path.name in names else (names.pop() if len(names) == 1 else None)
            if name is None:
                raise FileNotFoundError(f"{path}: no RecBole atomic files, or several datasets ({sorted(names)}); "
                                        "give a folder that holds one dataset's files")
        files = [path / f"{name}{s}" for s in SUFFIXES if (path / f"{name}{s}").is_file()]
        presplit = [path / f"{name}.{split}.inter" for split in SPLIT_FILES if (path / f"{name}.{split}.inter").is_file()]
        if presplit and not (path / f"{name}.train.inter").is_file():  # a stray test file would stand for the data
            raise MappingError(f"{path}: {', '.join(p.name for p in presplit)} without {name}.train.inter: a "
                               f"pre-split dataset needs its training file (remove the others to read "
                               f"{name}.inter whole)")
        if presplit:
            if path / f"{name}.inter" in files:
                logger.warning("%s: reading the pre-split %s, not %s.inter", path, [p.name for p in presplit], name)
                files.remove(path / f"{name}.inter")
            files += presplit
    if not files:
        raise FileNotFoundError(f"{path}: no RecBole atomic files ({', '.join(SUFFIXES)})")
    gov = Governor(cfg, known)
    for f in sorted(files, key=lambda p: SUFFIXES.index(p.suffix) if p.suffix in SUFFIXES else 99):
        if f.suffix not in SUFFIXES:
            raise MappingError(f"{f.name}: not a RecBole atomic file suffix")
        spec = _spec_for(f, parse_header(f))
        has_node_files = any(p.suffix in (".user", ".item") for p in files)
        if spec["role"] == "interactions":
            spec["create_users"] = not any(p.suffix == ".user" for p in files)
            spec["create_items"] = not any(p.suffix == ".item" for p in files)
            split = _split_of(f)
            if split and "split" not in spec:
                spec["split_value"] = split  # <name>.train.inter: RecBole's benchmark split, kept
        feed_file(gov, f, spec, limit=limit)
        logger.debug("recbole %s read (node files: %s)", f.name, has_node_files)
    return gov.finish()
