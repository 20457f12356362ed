"""Generic CSV / TSV / JSONL reader driven by a small mapping (a TOML file or a dict).

A mapping lists files, each with a ``role`` and which column holds which field::

    name = "ml-100k"
    lowercase_ids = false              # ids are never lowercased unless asked

    [[files]]
    path = "u.data"                    # relative to the data directory
    role = "interactions"
    format = "csv"                     # csv (any delimiter) | jsonl
    delimiter = "\\t"
    encoding = "utf-8"                 # undecodable bytes: row quarantined; latin-1 reads 0x80-0x9f as cp1252
    header = false                     # else the first line names the columns
    quoting = "none"                   # none | minimal (default: minimal for ",", none otherwise)
    columns = ["user", "item", "rating", "ts"]
    user = "user"
    item = "item"
    weight = "rating"
    timestamp = "ts"
    kind_value = "rating"              # or kind = "<column>"

Roles and their fields (``<field>`` names a column, ``<field>_value`` gives a constant, both: the
constant fills the column's blank cells, e.g. ``weight = "qty"`` with ``weight_value = 1`` when the
quantity is given on purchases only):

- ``interactions``: user, item, weight, timestamp, kind, split; a mapped weight column's blank cell is
  quarantined (missing, not 1), and ``weight_range = [low, high]`` quarantines values outside it;
  ``create_users`` / ``create_items``
  / ``create_nodes = true`` declare the users / items / both named by the events (for an event log
  without node files; counted in ``LoadResult.created``; a node only a quarantined event names is not
  created); ``title``/``description`` (or their
  ``_value`` constants), ``attributes`` and ``flags`` also emit item rows.
- ``users``: id, props, attributes, flags. ``items``: id, title, description, props, attributes, flags.
- ``entities``: id, name, type. ``item_entities``: item, entity, relation, ``entity_prefix``.
- ``triples``: head, relation, tail, ``entity_prefix``. ``friends``: user, friend.
- ``queries``: id, text. ``user_queries``: user, query, timestamp. ``query_items``: query, item, relevance
  (a mapped relevance column's blank cell is quarantined, as a weight's is). Those two name queries that
  a ``queries`` entry gives (or the graph holds): a log of searches lists its file twice, once as
  ``queries`` with ``id`` and ``text`` both its query column.

``props`` is a list of columns or a table ``{column = "int"|"float"|"str"|"bool"}``; the property is
named after the column unless ``prop_names = {column = "name"}`` says otherwise (names must be
identifiers). ``attributes`` is a list of ``{column, relation, entity_type, separator, prefix}`` (or one such
table): each value becomes an entity ``<prefix><value>`` (``prefix`` defaults to ``"<entity_type>:"``)
linked by ``relation``. ``flags`` is
``{columns, names, relation, entity_type, value = "1", off_value = "0", prefix}`` for one-hot columns
(MovieLens genres): ``value`` links, ``off_value`` or a blank cell does not, anything else is quarantined.
The attributes and flags of an ``items`` or ``users`` row state that node's values: loaded again, a
row's values of a relation replace the ones stored (a blank cell, flags all off, an empty JSON array or a
quarantined value leave the relation alone); those of
``interactions`` rows and ``item_entities`` files only add links. A file given on its own (a daily
events file) needs a mapping of one ``[[files]]`` entry, whose ``path`` is then not read.
In JSONL an attribute may hold an array of values; a JSON number or boolean in a text, attribute or
flag field reads as the CSV cell would (``1.5``, ``true``), and an object (or an array inside one)
quarantines the row, as does a field the mapping reads given twice in one object.
With ``header = true`` and ``columns`` both given, ``columns`` renames the header's columns one for
one: a first line of another width, or naming the same columns in another order, is an error.

Records are parsed one at a time, so a malformed line is quarantined without affecting the next. With
``quoting = "minimal"`` a quoted field may hold line breaks: its lines are joined into one record,
numbered by its first line; a quote left open (to the end of the file or for
:data:`MAX_RECORD_LINES` lines) quarantines that first line alone and reading goes on after it. A
mapped column absent from the header raises :class:`MappingError` naming it, and so does a key the
role does not read (a misspelt ``weigth``, ``create_users`` on ``friends``), and so does a value of
the wrong type (``path = 5``, ``props = "age"``, ``title_value = ["a"]``: see :data:`OPTION_TYPES`), and
so does a name no row could load under (``kind_value = "a click"``, an attribute column ``main genre``
without a ``relation``).
"""
from __future__ import annotations

import codecs
import csv
import difflib
import json
import re
import sys
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..governance import (PROP_RE, RESERVED_PROPS, GovernanceError, Governor, KnownIds, LoadResult, check_name,
                          check_relation, clip, fits_int64, id_text, is_blank_id, is_plain_number)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.config import IngestConfig


ROLE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # role -> (required fields, optional fields); each may be a column or a `<field>_value` constant
    "interactions": (("user", "item"), ("weight", "timestamp", "kind", "split", "title", "description")),
    "users": (("id",), ()),
    "items": (("id",), ("title", "description")),
    "entities": (("id", "type"), ("name",)),
    "item_entities": (("item", "entity", "relation"), ()),
    "triples": (("head", "relation", "tail"), ()),
    "friends": (("user", "friend"), ()),
    "queries": (("id", "text"), ()),
    "user_queries": (("user", "query"), ("timestamp",)),
    "query_items": (("query", "item"), ("relevance",)),
}
PROP_TYPES = ("str", "int", "float", "bool")
MAPPING_KEYS = ("name", "lowercase_ids", "files")
FILE_OPTIONS = ("path", "role", "format", "delimiter", "encoding", "header", "quoting", "columns")
ROLE_OPTIONS: dict[str, tuple[str, ...]] = {
    # role -> the options it reads besides its fields and FILE_OPTIONS (any other key is a typo)
    "interactions": ("weight_range", "create_users", "create_items", "create_nodes", "attributes", "flags"),
    "users": ("props", "prop_names", "attributes", "flags"),
    "items": ("props", "prop_names", "attributes", "flags"),
    "entities": ("entity_prefix",),
    "item_entities": ("entity_prefix",),
    "triples": ("entity_prefix",),
}
QUOTING = ("none", "minimal")
TEXT_FIELDS = ("title", "description", "name", "text")
# what a mapping value must be, by the words its error uses -> the check (TOML gives ints, lists, tables
# anywhere: a wrong one crashed the reader, or was loaded as its Python repr, title_value = ["a"] as "['a']")
TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda v: isinstance(v, str),
    "true or false": lambda v: isinstance(v, bool),  # a string "false" is truthy: header = "false" ate a row
    "a list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "a string or an integer": lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
    "a string or a number": lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool),
    "a list of columns or a table {column = type}":
        lambda v: isinstance(v, dict) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
}
OPTION_TYPES: dict[str, str] = {
    # a [[files]] key -> its type (in TYPE_CHECKS); each field names a column, each <field>_value is a constant
    **{f: "a string" for req, opt in ROLE_FIELDS.values() for f in req + opt},
    **{f"{f}_value": "a string" if f in TEXT_FIELDS else "a string or a number"
       for req, opt in ROLE_FIELDS.values() for f in req + opt},
    "path": "a string", "role": "a string", "format": "a string", "delimiter": "a string", "encoding": "a string",
    "quoting": "a string", "columns": "a list of strings", "entity_prefix": "a string",
    "props": "a list of columns or a table {column = type}",
    "header": "true or false", "create_users": "true or false", "create_items": "true or false",
    "create_nodes": "true or false",
}
ATTRIBUTE_TYPES: dict[str, str] = {"column": "a string", "relation": "a string", "entity_type": "a string",
                                   "separator": "a string", "prefix": "a string"}
FLAG_TYPES: dict[str, str] = {"columns": "a list of strings", "names": "a list of strings", "relation": "a string",
                              "entity_type": "a string", "value": "a string or an integer",
                              "off_value": "a string or an integer", "prefix": "a string"}
ATTRIBUTE_KEYS = tuple(ATTRIBUTE_TYPES)
FLAG_KEYS = tuple(FLAG_TYPES)


class MappingError(ValueError):
    """The mapping is invalid or does not fit the file (for example a column is missing)."""


def load_mapping(mapping: str | Path | dict) -> dict:
    """Read a mapping from a TOML file (or take a dict) and validate its shape.

    Raises:
        MappingError: unknown role, missing required field, bad property name.
    """
    if isinstance(mapping, dict):
        data = dict(mapping)
    else:
        with Path(mapping).open("rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as e:  # which file: the config's errors name theirs too
                raise MappingError(f"mapping {mapping} is not valid TOML: {e}") from None
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise MappingError("mapping needs a non-empty [[files]] list")
    unknown = _unknown_keys(data, MAPPING_KEYS)  # a misspelt lowercase_id would go unread
    if unknown:
        raise MappingError(f"unknown mapping key(s) {unknown}; a mapping has {list(MAPPING_KEYS)} "
                           f"(file options go in each [[files]] table)")
    if not isinstance(data.get("lowercase_ids", False), bool):
        raise MappingError(f"lowercase_ids must be true or false, not {data['lowercase_ids']!r}")
    for n, spec in enumerate(files):
        _check_shape(spec, n)
        role = spec.get("role")
        if role not in ROLE_FIELDS:
            raise MappingError(f"files[{n}]: unknown role {role!r} (expected one of {sorted(ROLE_FIELDS)})")
        if spec.get("format", "csv") not in ("csv", "tsv", "jsonl"):
            raise MappingError(f"files[{n}]: format must be csv, tsv or jsonl")
        _check_keys(spec, n, role)
        required, _ = ROLE_FIELDS[role]
        for f in required:
            if f not in spec and f"{f}_value" not in spec:
                raise MappingError(f"files[{n}] ({role}): field {f!r} needs a column ({f} = ...) "
                                   f"or a constant ({f}_value = ...)")
        _check_prop_names(spec, n)
        _check_names(spec, n, role)
    return data


NAME_CONSTANTS = {"kind_value": "interaction kind", "type_value": "entity type", "relation_value": "relation"}


def _check_names(spec: dict, n: int, role: str) -> None:
    """Names the mapping itself gives (``kind_value``, ``relation_value``, ``type_value``, an
    attribute's or a flag's relation and entity type, defaulting to its column) are checked here:
    an invalid one would quarantine every row of the file, one reason per row.

    Raises:
        MappingError: the name, where it comes from, and the pattern names must match.
    """
    named = [(key, spec[key], what) for key, what in NAME_CONSTANTS.items()
             if key in spec]  # with its column too: the constant fills the blank cells
    for what, entries, default in (("attributes", spec.get("attributes"), None), ("flags", spec.get("flags"), "genre")):
        for entry in _as_list(entries):
            relation = entry.get("relation", entry.get("column", default))
            named.append((f"{what} relation" + ("" if "relation" in entry else " (the column's name)"),
                          relation, "relation"))
            named.append((f"{what} entity_type" + ("" if "entity_type" in entry else " (the relation's)"),
                          entry.get("entity_type", relation), "entity type"))
    for key, value, what in named:
        try:
            check_relation(value) if what == "relation" else check_name(value, what)
        except GovernanceError as e:
            raise MappingError(f"files[{n}] ({role}): {key}: {e}") from None


def _check_prop_names(spec: dict, n: int) -> None:
    """Each property is an identifier, stored from one column: two columns under one name would
    keep only the last value of each row."""
    renames = spec.get("prop_names") or {}
    props = _prop_spec(spec, n)
    if not isinstance(renames, dict) or set(renames) - set(props):
        raise MappingError(f"files[{n}]: prop_names must be a table renaming columns of props {list(props)}, "
                           f"got {renames!r}")
    source_of: dict[str, str] = {}
    for col in props:
        prop = renames.get(col, col)
        if not isinstance(prop, str) or not PROP_RE.fullmatch(prop) or prop in RESERVED_PROPS:
            raise MappingError(f"files[{n}]: property name {prop!r} is not an identifier or is reserved")
        if prop in source_of:
            raise MappingError(f"files[{n}]: columns {source_of[prop]!r} and {col!r} are both stored as "
                               f"property {prop!r}; give each its own name in prop_names")
        source_of[prop] = col


def _check_shape(spec: dict, n: int) -> None:
    """The parts of a ``[[files]]`` entry that the readers index into, with a clear error."""
    if not isinstance(spec, dict):
        raise MappingError(f"files[{n}] must be a table ([[files]] with role = ...), not {spec!r}")
    _check_types(spec, OPTION_TYPES, f"files[{n}]: ")
    for attr in _as_list(spec.get("attributes")):  # a list of tables, or one table (as flags may be)
        if not isinstance(attr, dict) or "column" not in attr:
            raise MappingError(f"files[{n}]: each attributes entry needs a column = ...")
        _check_types(attr, ATTRIBUTE_TYPES, f"files[{n}]: attributes ")
        sep = attr.get("separator")
        if sep is not None and not (isinstance(sep, str) and sep):
            raise MappingError(f"files[{n}]: attributes separator for {attr['column']!r} must be a non-empty "
                               f"string (leave it out for one value a cell), not {sep!r}")
    for flags in _as_list(spec.get("flags")):
        if not isinstance(flags, dict) or not isinstance(flags.get("columns"), list):
            raise MappingError(f"files[{n}]: flags needs a columns = [...] list")
        _check_types(flags, FLAG_TYPES, f"files[{n}]: flags ")
        names = flags.get("names", flags["columns"])
        if not isinstance(names, list) or len(names) != len(flags["columns"]):
            raise MappingError(f"files[{n}]: flags lists {len(flags['columns'])} columns but "
                               f"{len(names) if isinstance(names, list) else names!r} names")
    bounds = spec.get("weight_range")
    if bounds is not None and not (isinstance(bounds, list) and len(bounds) == 2
                                   and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                                   and bounds[0] <= bounds[1]):
        raise MappingError(f"files[{n}]: weight_range must be [low, high], got {bounds!r}")
    delimiter = spec.get("delimiter", "\t" if spec.get("format") == "tsv" else ",")
    quoting = spec.get("quoting", "minimal" if delimiter == "," else "none")
    if quoting not in QUOTING:
        raise MappingError(f"files[{n}]: quoting must be one of {QUOTING}, not {quoting!r}")
    if not isinstance(delimiter, str) or not delimiter or (len(delimiter) != 1 and quoting != "none"):
        raise MappingError(f"files[{n}]: delimiter {delimiter!r} must be one character, or several with "
                           f"quoting = \"none\"")


def _check_types(table: dict, types: dict[str, str], where: str) -> None:
    """Each key of ``table`` that ``types`` names holds a value of that type (see :data:`TYPE_CHECKS`).

    Raises:
        MappingError: ``<where><key> must be <type>, not <value>``.
    """
    for key, expected in types.items():
        if key in table and not TYPE_CHECKS[expected](table[key]):
            raise MappingError(f"{where}{key} must be {expected}, not {clip(repr(table[key]), 80)}")


def _unknown_keys(table: dict, known: Iterable[str]) -> str:
    """The keys of ``table`` that are not ``known``, each with the closest known one as a hint
    (``'weigth' (did you mean 'weight'?)``); empty when there are none."""
    known = list(known)
    return ", ".join(f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, known, 1))
                     else repr(k) for k in sorted(str(k) for k in table if k not in known))


def _check_keys(spec: dict, n: int, role: str) -> None:
    """Refuse keys the reader would not read: a misspelt ``weigth`` or an option of another role
    would be ignored, and the rows loaded without it (a weight of 1, no timestamp)."""
    required, optional = ROLE_FIELDS[role]
    fields = required + optional
    known = set(FILE_OPTIONS) | set(fields) | {f"{f}_value" for f in fields} | set(ROLE_OPTIONS.get(role, ()))
    unknown = _unknown_keys(spec, known)
    if unknown:
        raise MappingError(f"files[{n}] ({role}): unknown key(s) {unknown}; this role reads the fields "
                           f"{list(fields)} (each a column, or <field>_value = a constant) and the options "
                           f"{list(ROLE_OPTIONS.get(role, ())) + list(FILE_OPTIONS)}")
    for what, entries, keys in (("attributes", spec.get("attributes"), ATTRIBUTE_KEYS),
                                ("flags", spec.get("flags"), FLAG_KEYS)):
        for entry in _as_list(entries):
            extra = sorted(str(k) for k in entry if k not in keys)  # a table: _check_shape
            if extra:
                raise MappingError(f"files[{n}] ({role}): unknown {what} key(s) {extra}; expected {list(keys)}")


def _prop_spec(spec: dict, n: int = 0) -> dict[str, str]:
    props = spec.get("props") or {}
    if isinstance(props, list):
        props = {p: "str" for p in props}
    for col, typ in props.items():
        if typ not in PROP_TYPES:
            raise MappingError(f"files[{n}]: property {col!r} has type {typ!r}, expected one of {PROP_TYPES}")
    return props


def _used_columns(spec: dict) -> list[str]:
    role = spec["role"]
    req, opt = ROLE_FIELDS[role]
    cols = [spec[f] for f in req + opt if f in spec]
    cols += list(_prop_spec(spec))
    cols += [a["column"] for a in _as_list(spec.get("attributes"))]
    for flags in _as_list(spec.get("flags")):
        cols += list(flags["columns"])
    return cols


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _prefixed(prefix: str, value: Any) -> Any:
    """``prefix`` + the id, or None (a missing id, quarantined as such) for a blank one: never the
    bare prefix, which would make one entity of every blank id."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return value  # 1.0, true, [1]: not an id, and governance quarantines it as such
    return None if is_blank_id(value) else prefix + id_text(value)


def _cr_line_ends(path: Path, lineno: int) -> MappingError:
    if lineno == 1:
        return MappingError(f"{path.name}: its lines end in CR alone (classic Mac), so it reads as one line: "
                            f"convert them to LF first (tr '\\r' '\\n' < old > new)")
    return MappingError(f"{path.name}: line {lineno} holds rows that end in CR alone (mixed line ends), so they "
                        f"would read as one: convert CR line ends to LF first (tr '\\r' '\\n' < old > new "
                        f"changes every CR, those inside fields too)")


_CR_BETWEEN_OBJECTS = re.compile(r"\}\s*\r\s*\{")


def check_cr_line_ends(path: Path, lineno: int, text: str, delimiter: str, quoting: str,
                       width: int | None) -> None:
    """Refuse a record (one line, or lines a quoted field joined) where a CR outside quotes ends
    rows: cut at such CRs, two or more of the pieces that are not blank have ``width`` fields (a
    header, ``width`` None: any such CR). A CR inside a field (a quoted one, or text with a stray
    CR) is data, and the record is left as it is. (In a file of one column, a stray CR in a value
    reads as two rows, and is refused.)

    Raises:
        MappingError: the file's rows end in CR alone from here on (mixed line ends).
    """
    if "\r" not in text:
        return
    cuts, quoted = [], False
    for at, c in enumerate(text):
        if c == '"' and quoting != "none":
            quoted = not quoted  # an escaped "" toggles twice
        elif c == "\r" and not quoted:
            cuts.append(at)
    if not cuts:
        return
    if width is None:
        raise _cr_line_ends(path, lineno)
    pieces = [text[a + 1:b] for a, b in zip([-1, *cuts], [*cuts, len(text)])]
    rows = 0
    for piece in pieces:
        try:
            rows += piece.strip() != "" and len(_split(piece, delimiter, quoting)) == width
        except csv.Error:  # a piece that does not parse is no row
            pass
    if rows >= 2:
        raise _cr_line_ends(path, lineno)


# A file labelled latin-1 (ISO-8859-1) whose bytes 0x80-0x9f are windows-1252's printable characters,
# as browsers read the label (WHATWG Encoding): latin-1 has only control characters there, which text
# would lose as spaces (the quotes of \x93Noir\x94, the euro sign). Its five unassigned bytes stay controls.
_WINDOWS_1252_C1 = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0)
                    if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}


def decoded_lines(path: Path, encoding: str, cr_ends_lines: bool = False,
                  cr_checked: bool = False) -> Iterator[tuple[int, str, str | None]]:
    """Yield ``(line_number, text, decode_error)`` for each line that is not empty or all spaces
    (CR/LF and BOM stripped); a line of delimiters only is a row, read and then quarantined.

    Args:
        cr_ends_lines: the file holds no text that may contain a CR (whitespace-separated ids): a CR
            inside any line is a line end, refused as below.
        cr_checked: the caller tells a CR that ends rows from one inside a field, on every line
            (:func:`check_cr_line_ends`, JSONL's CR between objects): the first line is not refused
            for holding one, so a quoted field with a CR loads there as on any later line.

    A file read as latin-1 has its bytes 0x80-0x9f read as windows-1252's characters (:data:`_WINDOWS_1252_C1`).

    Raises:
        MappingError: the lines end in CR alone (classic Mac): the file would read as one line;
            with ``cr_ends_lines``, also a line past the first that holds a CR (mixed line ends).
            Other readers tell a CR ending rows from one inside a field (:func:`check_cr_line_ends`).
    """
    c1 = _WINDOWS_1252_C1 if codecs.lookup(encoding).name == "iso8859-1" else None
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            raw = raw.rstrip(b"\r\n")
            if b"\r" in raw and ((lineno == 1 and not cr_checked) or cr_ends_lines):  # one LF at the end, maybe
                raise _cr_line_ends(path, lineno)
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip(b" "):
                continue
            try:
                yield lineno, raw.decode(encoding) if c1 is None else raw.decode(encoding).translate(c1), None
            except UnicodeDecodeError as e:
                yield lineno, raw.decode(encoding, errors="replace"), f"invalid {encoding} bytes at {e.start}"


UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # FF FE (UTF-32 LE's BOM begins so too), FE FF


def refuse_utf16(path: Path, encoding: str) -> None:
    """Refuse a file that starts with a UTF-16 byte-order mark, to be read as ``encoding`` (one that
    is ASCII-compatible): its columns would be ``'\\xff\\xfeu\\x00'`` and the like, or every line
    quarantined as bad bytes, with nothing to say why.

    Raises:
        MappingError: the file looks UTF-16, with what to do.
    """
    with path.open("rb") as fh:
        head = fh.read(2)
    if head in UTF16_BOMS:
        raise MappingError(f"{path.name}: starts with a UTF-16 byte-order mark ({head.hex(' ').upper()}) but is "
                           f"read as {encoding!r}: the file looks UTF-16, which kgrec reads only once converted "
                           f"(encoding = \"utf-16\" is refused too): iconv -f utf-16 -t utf-8 {path.name} > "
                           f"{path.stem}.utf8{path.suffix}")


def _split(line: str, delimiter: str, quoting: str) -> list[str]:
    if quoting == "none" or '"' not in line:
        return line.split(delimiter)
    return next(csv.reader([line], delimiter=delimiter, strict=True))


csv.field_size_limit(2**31 - 1)  # a long quoted text is truncated to max_text_chars, as an unquoted one is
MAX_RECORD_LINES = 10_000  # lines one quoted field may span before it counts as never closed


def _open_quote(text: str, delimiter: str) -> bool:
    """Whether ``text`` ends inside a quoted field (the record goes on on the next line)."""
    if '"' not in text:
        return False
    try:
        next(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False


def _records(lines: Iterator[tuple[int, str, str | None]], delimiter: str) -> Iterator[tuple[int, str, str | None]]:
    """Join the lines of a record whose quoted field holds line breaks, numbered by its first line.
    A quote never closed within :data:`MAX_RECORD_LINES` lines or by the end of the file, or lines
    that joined still do not parse, give the first line alone, to be quarantined; reading goes on
    from the line after it."""
    source, pushed_back = iter(lines), deque()
    while (first := pushed_back.popleft() if pushed_back else next(source, None)) is not None:
        if not _open_quote(first[1], delimiter):
            yield first
            continue
        pending, still_open = [first], True
        while still_open and len(pending) < MAX_RECORD_LINES:
            line = pushed_back.popleft() if pushed_back else next(source, None)
            if line is None:
                break
            pending.append(line)
            if '"' in line[1]:  # inside a quoted field what came before does not matter: reopen it and read on
                still_open = _open_quote('"' + line[1], delimiter)
        joined = "\n".join(text for _, text, _ in pending)
        if not still_open and _parses(joined, delimiter):
            yield first[0], joined, next((e for _, _, e in pending if e), None)
        else:
            yield first
            pushed_back.extendleft(reversed(pending[1:]))


def _parses(text: str, delimiter: str) -> bool:
    """Whether ``text`` is one well-formed CSV record."""
    try:
        rows = list(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    return len(rows) == 1


def iter_rows(path: Path, spec: dict, limit: int | None = None
              ) -> Iterator[tuple[int, dict | None, Any, str | None]]:
    """Yield ``(line, row, raw, error)`` for one file; ``row`` maps column name to value.

    Raises:
        MappingError: a mapped column is missing from the header (or from ``columns``).
    """
    fmt = spec.get("format", "csv")
    encoding = spec.get("encoding", "utf-8")
    try:  # lines are split on the byte \n: an encoding whose newline is another byte sequence cannot be read so.
        # utf-8-sig writes a BOM before its first character (decoded_lines drops it): not a wider newline
        ascii_compatible = "a,\t\n".encode(encoding).removeprefix(codecs.BOM_UTF8) == b"a,\t\n"
    except (LookupError, TypeError):  # TypeError: an encoding that is not a string
        raise MappingError(f"{path.name}: unknown encoding {encoding!r}") from None
    if not ascii_compatible:
        raise MappingError(f"{path.name}: encoding {encoding!r} is not ASCII-compatible (UTF-16/32): convert "
                           f"the file to UTF-8 first, e.g. iconv -f {encoding} -t utf-8")
    refuse_utf16(path, encoding)
    delimiter = spec.get("delimiter", "\t" if fmt == "tsv" else ",")
    quoting = spec.get("quoting", "minimal" if delimiter == "," else "none")
    header = spec.get("header", True)
    columns: list[str] | None = list(spec["columns"]) if spec.get("columns") else None
    used = _used_columns(spec)
    filled = {spec[f] for f in ROLE_FIELDS[spec["role"]][0] + ROLE_FIELDS[spec["role"]][1]
              if f in spec and f"{f}_value" in spec}  # columns whose blank (or, in JSONL, absent) cells take it
    if fmt != "jsonl" and not header and columns is None:
        raise MappingError(f"{path.name}: header = false needs a columns list")
    if fmt != "jsonl" and columns is not None and "header" not in spec:  # else a first data row could pass for one
        raise MappingError(f"{path.name}: with a columns list, say whether the first line is a header: "
                           f"header = false (no header line), or header = true (the columns rename it)")
    if columns is not None and fmt != "jsonl":
        _check_columns(path, used, columns)
    n = 0
    header_pending = fmt != "jsonl" and header  # the first non-blank line is the header
    header_fields: list[str] | None = None  # as read, to tell the header again mid-file (files joined)
    lines = decoded_lines(path, encoding, cr_checked=True)
    for lineno, text, err in (lines if fmt == "jsonl" or quoting == "none" else _records(lines, delimiter)):
        if not header_pending and limit is not None and n >= limit:  # a slice reads no further
            return
        if fmt == "jsonl" and _CR_BETWEEN_OBJECTS.search(text):  # a CR is never inside a JSON string
            raise _cr_line_ends(path, lineno)
        if fmt != "jsonl":  # before a decode error's quarantine: a CR-ended run must not pass as one bad line
            check_cr_line_ends(path, lineno, text, delimiter, quoting, None if header_pending else len(columns or ()))
        if header_pending:
            header_pending = False
            try:
                found = [c.strip() for c in _split(text, delimiter, quoting)]
            except csv.Error as e:
                raise MappingError(f"{path.name}: malformed header line ({e})") from e
            header_fields = found
            if columns is None:
                doubled = sorted({c for c in found if c in used and found.count(c) > 1})
                if doubled:
                    raise MappingError(f"{path.name}: the header names column(s) {doubled} twice")
                columns = found
                _check_columns(path, used, columns)
            elif len(found) != len(columns):
                # columns given as well rename the header's, one for one; a header of another width is
                # another file layout (or no header at all: header = false)
                raise MappingError(f"{path.name}: the first line has {len(found)} fields but the mapping's columns "
                                   f"list {len(columns)}; if the file has no header line, set header = false")
            elif any(name in columns and columns.index(name) != n for n, name in enumerate(found)):
                raise MappingError(f"{path.name}: the header {found} names the mapping's columns {columns} in "
                                   f"another order; fix `columns` (or leave it out to use the header)")
            continue  # with columns given as well, the header line is skipped
        n += 1
        if err:
            yield lineno, None, text, err
            continue
        if fmt == "jsonl":
            try:
                obj = _JSON.decode(text)
            except ValueError as e:  # JSONDecodeError, or an integer past Python's 4,300-digit limit
                yield lineno, None, text, f"invalid JSON ({getattr(e, 'msg', e)})"
                continue
            if not isinstance(obj, dict):
                yield lineno, None, text, "JSON line is not an object"
                continue
            missing = [c for c in used if c not in obj and c not in filled]  # a constant fills those
            if missing:
                yield lineno, None, obj, f"missing field {missing[0]!r}"
                continue
            doubled = [c for c in used if c in obj.doubled]
            if doubled:  # json keeps the last silently: which one the writer meant is unknown
                yield lineno, None, text, f"field {doubled[0]!r} given twice in the JSON object"
                continue
            yield lineno, obj, obj, None
            continue
        try:
            fields = _split(text, delimiter, quoting)
        except csv.Error as e:
            yield lineno, None, text, f"malformed CSV ({e})"
            continue
        assert columns is not None
        if len(fields) != len(columns):
            yield lineno, None, text, f"expected {len(columns)} fields, got {len(fields)}"
            continue
        # the header again, perhaps with its own BOM (Excel's exports, joined)
        if (header_fields is not None and fields[0].strip().removeprefix("\ufeff") == header_fields[0]
                and [f.strip().removeprefix("\ufeff") for f in fields] == header_fields):  # the first cell first: quick
            yield lineno, None, text, "the header line again (files joined?), not a row"
            continue
        yield lineno, dict(zip(columns, fields)), text, None


class _JsonObject(dict):
    """A JSON object that remembers the keys it was given more than once (``doubled``)."""

    __slots__ = ("doubled",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.doubled: frozenset[str] = (frozenset() if len(self) == len(pairs)
                                        else frozenset(k for k, n in Counter(k for k, _ in pairs).items() if n > 1))


_JSON = json.JSONDecoder(object_pairs_hook=_JsonObject)  # stateless: one for every file


def _check_columns(path: Path, used: list[str], columns: list[str]) -> None:
    for col in used:
        if col not in columns:
            raise MappingError(f"{path.name}: column {col!r} named in the mapping is not in the file's "
                               f"columns {columns[:30]}")


def _get(spec: dict, row: dict, f: str, default: Any = None) -> Any:
    """Field ``f`` of ``row``: its column's cell, or where the mapping gives ``<f>_value`` too, that
    constant for a blank cell (a quantity given on purchases only); else the constant, or ``default``."""
    if f in spec:
        value = row.get(spec[f])
        blank = value is None or (isinstance(value, str) and not value.strip())
        return spec[f"{f}_value"] if blank and f"{f}_value" in spec else value
    return spec.get(f"{f}_value", default)


def _convert_props(spec: dict, row: dict) -> dict:
    out: dict[str, Any] = {}
    renames = spec.get("prop_names") or {}
    for col, typ in _prop_spec(spec).items():
        value = row.get(col)
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                continue
            try:
                if typ in ("int", "float") and not is_plain_number(value):
                    raise ValueError(value)
                if typ == "int":
                    if not fits_int64(int(value)):
                        raise ValueError(value)
                    value = int(value)
                elif typ == "float":
                    value = float(value)
                elif typ == "bool":
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("true", "1", "yes")
            except ValueError:
                raise ValueError(f"property {col!r} is not {typ}: {value[:80]!r}") from None
        elif value is None:
            continue
        else:  # a JSON value: held to the declared type as a CSV cell is
            value = _typed_json_value(col, typ, value)
        out[renames.get(col, col)] = value
    return out


def _typed_json_value(col: str, typ: str, value: Any) -> Any:
    """A JSONL property's number or boolean as the mapping's type (``str``, ``int``, ``float`` or
    ``bool``), as a CSV load of the same data would store it.

    Raises:
        ValueError: the value does not have that type (a list, an object, 24.5 for an int).
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "str" and (number or isinstance(value, bool)):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if typ == "int" and number and (isinstance(value, int) or value.is_integer()):
        if not fits_int64(int(value)):
            raise ValueError(f"property {col!r} is outside the 64-bit integer range: {str(value)[:80]!r}")
        return int(value)
    if typ == "float" and number:
        try:
            return float(value)
        except OverflowError:  # an integer of 400 digits
            raise ValueError(f"property {col!r} is beyond float range: {str(value)[:80]!r}") from None
    if typ == "bool" and isinstance(value, bool):
        return value
    raise ValueError(f"property {col!r} is not {typ}: {str(value)[:80]!r}")


def _json_cells(spec: dict, row: dict) -> dict:
    """A JSONL row with its text, attribute and flag cells as a CSV load of the same data reads them:
    a number or boolean as its text (``1.5``, ``true``, as :func:`_typed_json_value` stores a ``str``
    property), an attribute's array as its values. Without this ``str()`` made ``True`` of ``true``,
    and a JSON object ``{'en': 'T'}`` of a title or an entity id.

    Raises:
        ValueError: such a cell holds a JSON object, or an array where one value is expected.
    """
    out = dict(row)  # row is also the raw line kept for the quarantine: left as read
    req, opt = ROLE_FIELDS[spec["role"]]
    for col in [spec[f] for f in req + opt if f in TEXT_FIELDS and f in spec]:
        out[col] = _json_text(col, row.get(col))
    for attr in _as_list(spec.get("attributes")):
        col = attr["column"]
        value = row.get(col)
        out[col] = [_json_text(col, v, "in its array") for v in value] if isinstance(value, list) else _json_text(col, value)
    for flags in _as_list(spec.get("flags")):
        for col in flags["columns"]:
            out[col] = _json_text(col, row.get(col))
    return out


def _json_text(col: str, value: Any, where: str = "") -> Any:
    """One JSON value where text is expected: a string or null as it is, a number or boolean as a
    CSV cell would hold it.

    Raises:
        ValueError: an object or an array, whose Python repr is no one's text.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        kind = "a JSON object" if isinstance(value, dict) else "a JSON array"
        raise ValueError(f"column {col!r} holds {kind}{' ' + where if where else ''}, not text or a number: "
                         f"{clip(json.dumps(value, ensure_ascii=False), 80)}")
    return _typed_json_value(col, "str", value)


def _attributes(gov: Governor, spec: dict, row: dict, item: Any, source: str, line: int, raw: Any,
                     lower: bool, *, owner: str = "item", stated: bool = False) -> None:
    """Entities and edges from ``attributes`` and ``flags`` columns of an item (or, with
    ``owner="user"``, a user) row; ``stated``: the node's own row (an items or users file), whose
    values replace the stored ones of each relation it gives."""
    link = gov.add_user_entity if owner == "user" else gov.add_item_entity
    for attr in _as_list(spec.get("attributes")):
        value = row.get(attr["column"])
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        relation = attr.get("relation", attr["column"])
        etype = attr.get("entity_type", relation)
        prefix = attr.get("prefix", f"{etype}:")
        sep = attr.get("separator")
        values = value if isinstance(value, list) else (str(value).split(sep) if sep is not None else [value])
        values = [id_text(v) for v in values if not is_blank_id(v)]  # a zero-width space alone: never the bare prefix
        rejected = gov.quarantined
        for v in values:
            gov.add_entity(source, line, raw, id=prefix + v, type=etype, name=v, lowercase=lower)
        whole = gov.quarantined == rejected  # a value quarantined: the row does not state the relation whole
        for v in values:
            link(source, line, raw, **{owner: item}, entity=prefix + v, relation=relation, lowercase=lower,
                 stated=stated and whole)
    for flags in _as_list(spec.get("flags")):
        on = str(flags.get("value", "1"))
        relation = flags.get("relation", "genre")
        etype = flags.get("entity_type", relation)
        prefix = flags.get("prefix", f"{etype}:")
        off_value = str(flags.get("off_value", "0"))
        cells = [("" if row.get(col) is None else str(row.get(col)).strip(), col, name)  # same length: load_mapping
                 for col, name in zip(flags["columns"], flags.get("names", flags["columns"]))]
        bad = [(value, col) for value, col, _ in cells if value not in (on, "", off_value)]
        for value, col in bad:
            gov.quarantine(source, line, f"flag column {col!r} is {value[:40]!r}, neither {on!r} nor "
                                         f"{off_value!r}", raw)
        for value, _, name in cells:  # a bad cell: the row does not state the relation whole
            if value == on:
                link(source, line, raw, **{owner: item}, entity=prefix + name, relation=relation, lowercase=lower,
                     stated=stated and not bad)


def _flag_entities(gov: Governor, spec: dict, source: str, lowercase: bool = False) -> None:
    """Flag columns name a fixed set of entities: one entity row each, from the mapping itself."""
    for flags in _as_list(spec.get("flags")):
        relation = flags.get("relation", "genre")
        etype = flags.get("entity_type", relation)
        prefix = flags.get("prefix", f"{etype}:")
        for name in flags.get("names", flags["columns"]):
            gov.add_entity(source, 0, {"flag": name}, id=prefix + name, type=etype, name=name, lowercase=lowercase)


def _emits_items(spec: dict) -> bool:
    """Whether an interactions entry also describes its items (a title or description, given by a
    column or a constant, attributes or flags): each event line then gives an item row as well."""
    return (any(k in spec for k in ("title", "description", "title_value", "description_value"))
            or bool(spec.get("attributes")) or bool(spec.get("flags")))


def feed_file(gov: Governor, path: Path, spec: dict, *, lowercase_ids: bool = False,
              limit: int | None = None, source: str | None = None) -> None:
    """Read one file per its mapping entry and feed every row to ``gov``.

    Args:
        gov: The governor collecting rows.
        path: The file.
        spec: Its ``[[files]]`` entry.
        lowercase_ids: Lowercase every id (only when the mapping says so).
        limit: Read at most this many data lines (for slices and tests).
        source: Name used in the report and the quarantine (default: the file name; read_tabular
            passes the mapping's path as written, so two files of one name in two folders stay two).
    """
    role = spec["role"]
    source = source or path.name
    lower = lowercase_ids
    weight_range = tuple(spec["weight_range"]) if spec.get("weight_range") else None
    creates = [kind for kind, flag in (("users", "create_users"), ("items", "create_items"))
               if spec.get("create_nodes") or spec.get(flag)]  # created only while an event naming them loads
    emits_items = role == "interactions" and _emits_items(spec)
    if spec.get("flags"):
        _flag_entities(gov, spec, source + "#flags", lower)
    jsonl = spec.get("format") == "jsonl"
    for line, row, raw, err in gov.rows_of(source, iter_rows(path, spec, limit), expect_rows=limit != 0):
        if err is not None or row is None:
            gov.quarantine(source, line, err or "unreadable row", raw)
            continue
        if jsonl:
            try:
                row = _json_cells(spec, row)
            except ValueError as e:
                gov.quarantine(source, line, str(e), raw)
                continue
        g = lambda f, d=None: _get(spec, row, f, d)  # noqa: E731
        if role == "interactions":
            user, item = g("user"), g("item")
            if emits_items:
                rejected = gov.quarantined
                gov.add_item(source, line, raw, id=item, title=g("title"), description=g("description"),
                             lowercase=lower)
                if gov.quarantined == rejected:
                    _attributes(gov, spec, row, item, source, line, raw, lower)
            gov.add_interaction(source, line, raw, user=user, item=item, kind=g("kind", "interact"),
                                weight=g("weight"), ts=g("timestamp"), split=g("split", ""), lowercase=lower,
                                weight_required="weight" in spec, weight_range=weight_range, creates=creates)
        elif role in ("users", "items"):
            try:
                props = _convert_props(spec, row)
            except ValueError as e:
                gov.quarantine(source, line, str(e), raw)
                continue
            rejected = gov.quarantined
            if role == "users":
                gov.add_user(source, line, raw, id=g("id"), props=props, lowercase=lower)
            else:
                gov.add_item(source, line, raw, id=g("id"), title=g("title"), description=g("description"),
                             props=props, lowercase=lower)
            if gov.quarantined == rejected:  # a rejected row's attributes would hang off nothing (or a placeholder)
                _attributes(gov, spec, row, g("id"), source, line, raw, lower, owner=role[:-1], stated=True)
        elif role == "entities":
            prefix = spec.get("entity_prefix", "")
            eid = g("id")
            gov.add_entity(source, line, raw, id=_prefixed(prefix, eid), type=g("type"), name=g("name", eid),
                           lowercase=lower)
        elif role == "item_entities":
            gov.add_item_entity(source, line, raw, item=g("item"),
                                entity=_prefixed(spec.get("entity_prefix", ""), g("entity")),
                                relation=g("relation"), lowercase=lower)
        elif role == "triples":
            prefix = spec.get("entity_prefix", "")
            gov.add_triple(source, line, raw, head=_prefixed(prefix, g("head")), relation=g("relation"),
                           tail=_prefixed(prefix, g("tail")), lowercase=lower)
        elif role == "friends":
            gov.add_friend(source, line, raw, user=g("user"), friend=g("friend"), lowercase=lower)
        elif role == "queries":
            gov.add_query(source, line, raw, id=g("id"), text=g("text"), lowercase=lower)
        elif role == "user_queries":
            gov.add_user_query(source, line, raw, user=g("user"), query=g("query"), ts=g("timestamp"), lowercase=lower)
        elif role == "query_items":
            gov.add_query_item(source, line, raw, query=g("query"), item=g("item"), relevance=g("relevance"),
                               lowercase=lower, relevance_required="relevance" in spec)


def read_tabular(path: str | Path, mapping: str | Path | dict, cfg: "IngestConfig | None" = None, *,
                 limit: int | None = None, known: "KnownIds | None" = None) -> LoadResult:
    """Read the files a mapping describes, through governance.

    Args:
        path: Data directory (file paths in the mapping are relative to it), or a single file when the
            mapping has one ``[[files]]`` entry (its ``path`` may then be omitted).
        mapping: TOML path or dict (see the module docstring).
        cfg: Ingest settings (unknown-reference policy, text limit).
        limit: Read at most this many data lines per file.
        known: the target graph's ids lookup (see :class:`~kg.governance.Governor`).

    Returns:
        The governed :class:`~kg.governance.LoadResult`.

    Raises:
        MappingError: invalid mapping or a mapped column missing from a file.
        FileNotFoundError: a mapped file does not exist.
    """
    data = load_mapping(mapping)
    path = Path(path)
    if not path.exists():  # not "a files entry has no path": the data itself is missing
        raise FileNotFoundError(f"{path}: no such file or directory")
    gov = Governor(cfg, known)
    files = data["files"]
    for spec in files:
        if path.is_file():
            if len(files) != 1:
                raise MappingError(f"{path} is a file but the mapping lists {len(files)} files: pass their directory, "
                                   f"or a mapping of one [[files]] entry for this file (a daily events file, say; "
                                   f"that entry's path is not read)")
            fpath, source = path, path.name
        else:
            if "path" not in spec:
                raise MappingError(f"files entry with role {spec['role']!r} has no path")
            fpath = path / spec["path"]
            source = Path(spec["path"]).as_posix()  # as written: x/ev.csv and y/ev.csv are two sources
        if not fpath.is_file():
            raise FileNotFoundError(f"{fpath}: file named in the mapping does not exist")
        feed_file(gov, fpath, spec, lowercase_ids=bool(data.get("lowercase_ids", False)), limit=limit,
                  source=source)
    return gov.finish()
