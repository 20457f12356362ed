"""Row-level data governance: validate, normalise, deduplicate and reconcile source rows.

Every reader in :mod:`kg.sources` feeds raw rows into a :class:`Governor`, which returns a
:class:`LoadResult`: canonical :class:`~kg.records.GraphRecords`, the quarantined rows (each with its
source file, line, reason and raw row) and a per-file reconciliation report where always
``read == loaded + quarantined + deduplicated``.

Rules applied to each candidate row:

- required fields present; ids are non-empty strings after Unicode NFKC, removal of invisible
  characters (zero-width spaces, soft hyphens, stray byte-order marks, bidi marks) and whitespace strip
  (integers are accepted and stringified; ids are lowercased only when a mapping asks for it);
- weights/ratings/relevances are finite numbers ``>= 0`` (default ``1.0`` when absent);
- timestamps are unix seconds or ISO 8601 (empty means unknown, stored as ``0``);
- text is NFC-normalised (ids fold compatibility forms, text keeps them), whitespace collapsed (a
  control character such as NUL counts as a space) and truncated to ``max_text_chars``
  (truncation is recorded in :attr:`LoadResult.truncated`, the row is kept);
- a node id seen twice: the later row is merged into the first (blank fields filled) and counted as
  deduplicated; an edge seen twice (interaction key ``(user, item, kind, ts)``) is deduplicated;
- an edge naming a user/item/entity/query that neither this load nor the target graph (the
  ``known`` lookup, when given) holds is quarantined or the node is created, per
  ``IngestConfig.unknown_reference`` (KG triples always create their entities, type ``kg``);
  a node an event declares (the users of an event log) is created only if an event that declares it
  loads, so a quarantined event creates nothing, and an edge needing only that node goes with it;
- an event given two splits (the same ``(user, item, kind, ts)``) and integers beyond 64 bits are
  quarantined;
- relation names, interaction kinds, entity types and property names must match
  ``^[A-Za-z0-9_.:\\-]{1,100}$`` (property names: an identifier). They are stored as property values
  by the write path, never as labels or relationship types, so Cypher-looking text is only data.

A row produced from a file counts once in that file's ``read``; a line that yields several rows (a
LightGCN line with many items, a ``u.item`` line with its genre links) counts each row.
"""
from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, TypeVar

from .records import GraphRecords

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.config import IngestConfig

logger = logging.getLogger(__name__)
T = TypeVar("T")

NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")  # used with fullmatch
# an absolute IRI (RFC 3987's characters, less the ones N-Triples escapes), the form of RDF predicates;
# no control character (C1 ones too), lone surrogate (unstorable: the ingest failed mid-write) or U+FFFE/F
IRI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]{1,1000}")  # used with fullmatch
PROP_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # used with fullmatch
# kgrec's own node properties: a source column of that name would overwrite them (embedding and
# embedding_model are written back by serving.writeback)
# invisible characters that copy and paste leave in ids: zero-width space, soft hyphen, word joiner,
# byte-order mark, bidi marks (Arabic's too) and embeddings. Not the zero-width (non-)joiners, which tell words
# apart in Persian and Indic scripts and join emoji sequences.
INVISIBLE = dict.fromkeys([0x200B, 0x00AD, 0x2060, 0xFEFF, 0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F),
                           *range(0x2066, 0x206A)])
RESERVED_PROPS = frozenset({"id", "title", "description", "type", "name", "text", "embedding", "embedding_model"})
SPLITS = ("", "train", "valid", "test")
MAX_ID_CHARS = 1000
MAX_RAW_CHARS = 4096
POLICIES = ("quarantine", "create")


class GovernanceError(ValueError):
    """A value fails a governance rule (the message is the quarantine reason)."""


@dataclass
class LoadResult:
    """What one governed load produced.

    Attributes:
        records: Canonical rows that passed every rule (the write path's input).
        quarantine: Rejected rows, each ``{"source", "line", "reason", "raw"}``.
        report: Per source file ``{"read", "loaded", "quarantined", "deduplicated"}``.
        truncated: Texts cut to ``max_text_chars``: ``{"source", "line", "field", "chars"}``.
        created: Nodes created for unknown references (``unknown_reference='create'``) per kind.
        in_graph: References to nodes the load has no row for but the target graph already holds
            (found through the ``known`` lookup), per kind: accepted, not created.
    """

    records: GraphRecords = field(default_factory=GraphRecords)
    quarantine: list[dict] = field(default_factory=list)
    report: dict[str, dict[str, int]] = field(default_factory=dict)
    truncated: list[dict] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)
    in_graph: dict[str, int] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        """Report counts summed over all files."""
        out = {"read": 0, "loaded": 0, "quarantined": 0, "deduplicated": 0}
        for counts in self.report.values():
            for k in out:
                out[k] += counts.get(k, 0)
        return out

    def reconciles(self) -> bool:
        """True when every file satisfies ``read == loaded + quarantined + deduplicated``."""
        return all(c["read"] == c["loaded"] + c["quarantined"] + c["deduplicated"] for c in self.report.values())


# --------------------------------------------------------------------------- value rules


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (category Cc)


def normalize_text(value: Any, max_chars: int | None = None) -> tuple[str, bool]:
    """NFC-normalise, collapse whitespace (control characters such as NUL count as spaces) and
    truncate. NFC, not the ids' NFKC: a title keeps its ``³``, ``™`` and ``½`` (the text encoders
    fold them for themselves).

    Args:
        value: Text (``None`` becomes ``""``; other scalars are stringified).
        max_chars: Maximum length kept, or ``None`` for no limit.

    Returns:
        ``(text, truncated)``.
    """
    if value is None:
        return "", False
    text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", str(value))).split())
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars], True
    return text, False


def normalize_id(value: Any, what: str = "id", lowercase: bool = False) -> str:
    """Validate and normalise an external id (NFKC, the invisible characters of :data:`INVISIBLE`
    removed, whitespace strip, optional lowercase).
    NFKC folds compatibility forms on purpose: full-width ``ＵＳＥＲ１`` is ``USER1``, and so ``u²``
    is ``u2``.

    Raises:
        GovernanceError: missing, empty, too long, or not a string/integer.
    """
    if value is None:
        raise GovernanceError(f"missing {what}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise GovernanceError(f"{what} must be a string or integer, got {type(value).__name__}")
    text = id_text(value)
    if not text:
        raise GovernanceError(f"empty {what}")
    if len(text) > MAX_ID_CHARS:
        raise GovernanceError(f"{what} longer than {MAX_ID_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise GovernanceError(f"{what} contains control characters")
    check_encodable(text, what)
    return text.lower() if lowercase else text


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_encodable(text: str, what: str) -> str:
    """``text``, when it is valid Unicode: a lone surrogate (a JSON ``\\ud800`` escape, say) cannot be
    stored in Neo4j nor written as UTF-8.

    Raises:
        GovernanceError: ``text`` holds a lone surrogate.
    """
    if _SURROGATE.search(text):
        raise GovernanceError(f"{what} is not valid Unicode: it holds a lone surrogate (U+D800-U+DFFF, such as "
                              f"a JSON \\ud800 escape without its pair)")
    return text


def id_text(value: Any) -> str:
    """``value`` as an id's text: without the invisible characters of :data:`INVISIBLE` (``u\u200b2``
    would be a second, invisible ``u2``), NFKC-normalised, stripped; no validation."""
    return unicodedata.normalize("NFKC", str(value).translate(INVISIBLE)).strip()


def is_blank_id(value: Any) -> bool:
    """Whether ``value`` is no id at all: missing, or nothing once normalised (:func:`normalize_id`)."""
    return value is None or not id_text(value)


def check_name(value: Any, what: str = "relation") -> str:
    """Validate a relation name / kind / entity type against ``^[A-Za-z0-9_.:\\-]{1,100}$``.

    Raises:
        GovernanceError: the name does not match (it would never become a label or type anyway).
    """
    if not isinstance(value, str):
        raise GovernanceError(f"{what} must be a string, got {type(value).__name__}")
    name = id_text(value)  # as ids are: no invisible twins
    if not NAME_RE.fullmatch(name):
        raise GovernanceError(f"invalid {what} name {clip(repr(name), 120)}: must match {NAME_RE.pattern}")
    return name


def check_relation(value: Any) -> str:
    """Validate a relation name: a name as :func:`check_name` takes, or an absolute IRI (an RDF
    predicate such as ``http://xmlns.com/foaf/0.1/knows``; N-Triples' ``<...>`` brackets are removed).

    Relation names are stored as property values and passed as parameters, never written into Cypher.

    Raises:
        GovernanceError: neither form.
    """
    if isinstance(value, str):
        name = id_text(value)
        if name.startswith("<") and name.endswith(">"):
            name = name[1:-1]
        if IRI_RE.fullmatch(name):
            return name
    try:
        return check_name(value, "relation")
    except GovernanceError as e:
        raise GovernanceError(f"{e}, or be an absolute IRI (http://example.org/knows)") from None


def _floor(text: str, number: float) -> int:
    """``text``'s number rounded down exactly, also where its exponent is past what Decimal takes
    (then it is 0, or tiny, which its float ``number`` underflowed to 0: -1 when it is below 0)."""
    try:
        return math.floor(Decimal(text))
    except InvalidOperation:
        negative = text.startswith("-") and any(c in "123456789" for c in re.split("[eE]", text)[0])
        return -1 if number == 0 and negative else math.floor(number)


def is_plain_number(text: str) -> bool:
    """Whether ``text`` is written as a number in ASCII with no digit separators: Python's ``int``
    and ``float`` also read ``1_000`` and ``١٢`` (Arabic-Indic digits), which a data file means as
    text or a typo, and which other readers of the same file (Neo4j, pandas' C parser) do not."""
    return text.isascii() and "_" not in text


def parse_number(value: Any, what: str = "weight", default: float | None = 1.0) -> float:
    """Parse a finite, non-negative number (a string in ASCII, see :func:`is_plain_number`).

    Raises:
        GovernanceError: not a number, NaN, infinite or negative (or missing without a default).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise GovernanceError(f"missing {what}")
        return float(default)
    if isinstance(value, bool):
        raise GovernanceError(f"{what} must be a number, got bool")
    try:
        if isinstance(value, str) and not is_plain_number(value.strip()):
            raise ValueError(value)
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer of 400 digits
        raise GovernanceError(f"{what} is not a number: {clip(repr(value), 80)}") from None
    if math.isnan(number):
        raise GovernanceError(f"{what} is NaN")
    if math.isinf(number):
        raise GovernanceError(f"{what} is infinite")
    if number < 0:
        raise GovernanceError(f"{what} is negative ({number:g})")
    if number > FLOAT32_MAX:  # snapshots and bulk loads store weights as float32
        raise GovernanceError(f"{what} {number:g} is beyond float32 range")
    return number


FLOAT32_MAX = 3.4028234663852886e38
MAX_SECONDS = 100_000_000_000  # the year 5138: a larger number is milliseconds (or finer), not seconds


def _seconds(value: int) -> int:
    if abs(value) >= MAX_SECONDS:  # stored as seconds it would also lift a feed's watermark past every real event
        raise GovernanceError(f"timestamp {value} is not unix seconds (in milliseconds? divide by 1000)")
    return value


def parse_timestamp(value: Any) -> int:
    """Parse unix seconds (int, float or numeric string) or ISO 8601 into integer unix seconds.
    Numbers of 10^11 or more (milliseconds, microseconds) and dates past the year 5138 (the same
    bound) are refused. A string of exactly eight digits is an ISO 8601 basic date (``20201231``),
    midnight UTC, not seconds into 1970.

    ``None`` or an empty string means unknown and gives ``0``. Naive ISO times are taken as UTC.

    Raises:
        GovernanceError: anything else.
    """
    if value is None:
        return 0
    if isinstance(value, bool):
        raise GovernanceError("timestamp must be a number or ISO 8601 string, got bool")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):  # an int is finite (and may not fit a float)
            raise GovernanceError(f"timestamp is not finite ({value})")
        return _seconds(_int64(math.floor(value), "timestamp"))
    if not isinstance(value, str):
        raise GovernanceError(f"timestamp has unsupported type {type(value).__name__}")
    text = value.strip()
    if not text:
        return 0
    if len(text) == 8 and text.isascii() and text.isdigit():  # ISO 8601 basic date, not 1970's seconds
        try:
            dt = datetime.strptime(text, "%Y%m%d")
        except ValueError:
            raise GovernanceError(f"timestamp {text!r}: eight digits are read as a date (YYYYMMDD) and this is "
                                  f"not one; write unix seconds of 1970 with a sign (+{text})") from None
        text = dt.date().isoformat()  # and on as the ISO date it is, past the same checks
    try:
        number = float(text) if is_plain_number(text) else None
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise GovernanceError(f"timestamp is not finite ({text})")
        # down exactly: a float rounds "1700000000.99999999" up to the next second
        return _seconds(_int64(int(text) if text.lstrip("+-").isdigit() else _floor(text, number), "timestamp"))
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise GovernanceError(f"unparseable timestamp {clip(repr(text), 80)}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # down, as numbers (1969-12-31T23:59:59.5Z is -1, not 0: unknown), in whole numbers (a float's
    # timestamp() rounds microseconds away past the year 2255)
    seconds = (dt - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(seconds=1)
    if abs(seconds) >= MAX_SECONDS:  # 9999-12-31 as "never": not a time
        raise GovernanceError(f"timestamp {clip(repr(text), 80)} is past the year 5138, the most kgrec "
                              "stores (a placeholder? leave the cell blank for an unknown time)")
    return seconds


def fits_int64(value: int) -> bool:
    """Whether Neo4j can store ``value`` as an integer (64 bits, signed)."""
    return -(1 << 63) <= value < (1 << 63)


def _int64(value: int, what: str) -> int:
    """``value`` if Neo4j can store it (a 64-bit integer), else a GovernanceError."""
    if not fits_int64(value):
        raise GovernanceError(f"{what} {clip(str(value), 40)} is outside the 64-bit integer range")
    return value


def _conflict(first: dict, row: dict) -> str:
    """The first field (or property) where two rows of one node or edge both have a value and differ,
    as ``"name 'a' (not 'b')"``; ``""`` when the later row only repeats or fills in the first."""
    for key, value in row.items():
        if key == "props":
            mine = first.get("props") or {}
            for prop, v in (value or {}).items():
                if prop in mine and v not in ("", None) and mine[prop] not in ("", None) and mine[prop] != v:
                    return f"{prop} {clip(repr(mine[prop]), 40)} (not {clip(repr(v), 40)})"
        elif value not in ("", None) and first.get(key) not in ("", None) and first.get(key) != value:
            return f"{key} {clip(repr(first.get(key)), 40)} (not {clip(repr(value), 40)})"
    return ""


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were."""
    return text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)"


def _clip_raw(raw: Any) -> Any:
    """Keep quarantined raw rows bounded and JSON-friendly."""
    if isinstance(raw, str):
        return clip(raw, MAX_RAW_CHARS)
    if isinstance(raw, dict):
        return {str(k): _clip_raw(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return [_clip_raw(v) for v in raw]
    if isinstance(raw, bytes):
        return clip(raw.decode("utf-8", errors="replace"), MAX_RAW_CHARS)
    if raw is None or isinstance(raw, (int, float, bool)):
        return raw
    return clip(str(raw), MAX_RAW_CHARS)


# --------------------------------------------------------------------------- the governor


@dataclass
class _Edge:
    kind: str
    row: dict
    source: str
    line: int
    raw: Any
    repeats: list[tuple[str, int, Any]] = field(default_factory=list)  # deduplicated rows: (source, line, raw)
    creates: tuple[tuple[str, str], ...] = ()  # (row key, node kind) of the ends this edge declares
    conflicts: list[dict] = field(default_factory=list)  # quarantine entries of rows that contradict this one


EDGE_ENDPOINTS: dict[str, tuple[tuple[str, str], ...]] = {
    # records field -> ((row key, node kind), ...) checked for referential integrity
    "interactions": (("user", "users"), ("item", "items")),
    "user_queries": (("user", "users"), ("query", "queries")),
    "query_items": (("query", "queries"), ("item", "items")),
    "item_entities": (("item", "items"), ("entity", "entities")),
    "user_entities": (("user", "users"), ("entity", "entities")),
    "friends": (("user", "users"), ("friend", "users")),
    "triples": (),
}
_NODE_KINDS = ("users", "items", "queries", "entities")
KnownIds = Callable[[str, list[str]], Iterable[str]]
"""``known(kind, ids)``: which of ``ids`` of a node kind (``users``...) the target graph holds."""
# one node or edge of each kind, for reasons ("entity 'x' is already loaded"; kind[:-1] gave "entitie")
_SINGULAR = {"users": "user", "items": "item", "queries": "query", "entities": "entity",
             "interactions": "interaction", "user_queries": "user-query", "query_items": "query-item",
             "item_entities": "item-entity", "user_entities": "user-entity", "friends": "friend", "triples": "triple"}
KEPT = "; kept that row"  # a conflicting edge row's reason, amended in finish if that row is quarantined after all


class Governor:
    """Accumulates governed rows from one or more source files; :meth:`finish` returns the result.

    Each ``add_*`` method takes the source file name, line number and raw row (kept for the
    quarantine) plus the row's fields, and returns ``True`` when the row was accepted for now
    (references are resolved in :meth:`finish`, since files may come in any order).

    Args:
        cfg: Ingest settings (``unknown_reference``, ``max_text_chars``); defaults when ``None``.
        known: ``known(kind, ids)`` -> the ids of that kind (``users``, ``items``, ``entities``,
            ``queries``) the target graph already holds (``kg.ingest.existing_ids``). References to
            them are accepted without a row, so a file of new events for known users and items
            loads on its own. ``None``: only this load's rows count.
    """

    def __init__(self, cfg: "IngestConfig | None" = None, known: "KnownIds | None" = None) -> None:
        if cfg is None:
            from kgrec.config import IngestConfig

            cfg = IngestConfig()
        if cfg.unknown_reference not in POLICIES:
            raise ValueError(f"unknown_reference must be one of {POLICIES}, got {cfg.unknown_reference!r}")
        self.policy: str = cfg.unknown_reference
        self.max_text_chars: int = int(cfg.max_text_chars)
        self._nodes: dict[str, dict[str, dict]] = {k: {} for k in _NODE_KINDS}
        self._node_source: dict[str, dict[str, str]] = {k: {} for k in _NODE_KINDS}
        self._edges: list[_Edge] = []
        self._declared: dict[str, set[str]] = {k: set() for k in _NODE_KINDS}
        self._required: list[tuple[str, str, str, int, Any, str]] = []  # (kind, id, source, line, raw, reason)
        self._edge_keys: dict[tuple, _Edge] = {}  # the first row of each edge key
        self._event_split: dict[tuple, str] = {}  # interaction key -> the split of its first row
        self._known = known
        self._result = LoadResult()

    # ---------------------------------------------------------------- bookkeeping

    def _count(self, source: str, key: str, n: int = 1) -> None:
        counts = self._result.report.setdefault(
            source, {"read": 0, "loaded": 0, "quarantined": 0, "deduplicated": 0})
        counts[key] += n

    def add_source(self, source: str) -> None:
        """List ``source`` in the report before its rows come: a file that gives none (empty, or a
        header alone) shows as ``read: 0``, so a failed export is seen rather than missing."""
        self._count(source, "read", 0)

    def rows_of(self, source: str, rows: Iterable[T], *, expect_rows: bool = True) -> Iterator[T]:
        """Yield ``rows``, one file's, after :meth:`add_source`; at their end, warn when the file gave
        nothing (an empty file, or a header alone: a failed upstream export, perhaps). A ``limit`` of 0
        passes ``expect_rows=False``."""
        self.add_source(source)
        given = False
        for row in rows:
            given = True
            yield row
        if not given and expect_rows and not self._result.report[source]["read"]:  # no undecodable line either
            logger.warning("%s: no data rows (an empty file, or a header alone): nothing read from it", source)

    @property
    def quarantined(self) -> int:
        """Rows quarantined so far (a caller can tell whether its last row was rejected)."""
        return len(self._result.quarantine)

    def quarantine(self, source: str, line: int, reason: str, raw: Any) -> bool:
        """Record a row that was read but rejected. Returns ``False`` (for ``return`` chaining)."""
        self._count(source, "read")
        self._quarantine(source, line, reason, raw)
        return False

    def _quarantine(self, source: str, line: int, reason: str, raw: Any) -> dict:
        self._count(source, "quarantined")
        entry = {"source": source, "line": line, "reason": reason, "raw": _clip_raw(raw)}
        self._result.quarantine.append(entry)
        return entry

    def _text(self, value: Any, source: str, line: int, fieldname: str) -> str:
        if isinstance(value, (dict, list, tuple, set)):  # a JSON object or array: its Python repr is no text
            raise GovernanceError(f"{fieldname} must be text, got {type(value).__name__}")
        text, cut = normalize_text(value, self.max_text_chars)
        check_encodable(text, fieldname)
        if cut:
            self._result.truncated.append({"source": source, "line": line, "field": fieldname,
                                           "chars": len(normalize_text(value)[0])})
        return text

    def _props(self, props: dict | None, source: str, line: int) -> dict:
        out: dict[str, Any] = {}
        for key, value in (props or {}).items():
            if not isinstance(key, str) or not PROP_RE.fullmatch(key) or key in RESERVED_PROPS:
                raise GovernanceError(f"invalid property name {clip(repr(key), 80)}")
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if isinstance(value, bool):
                out[key] = value
            elif isinstance(value, int):
                out[key] = _int64(value, f"property {key}")
            elif isinstance(value, float):
                if not math.isfinite(value):
                    raise GovernanceError(f"property {key} is not finite")
                out[key] = value
            elif isinstance(value, str):
                out[key] = self._text(value, source, line, key)
            else:
                raise GovernanceError(f"property {key} has unsupported type {type(value).__name__}")
        return out

    def _add_node(self, kind: str, row: dict, source: str, line: int, raw: Any) -> bool:
        self._count(source, "read")
        nodes = self._nodes[kind]
        first = nodes.get(row["id"])
        if first is None:
            nodes[row["id"]] = row
            self._node_source[kind][row["id"]] = source
            return True
        clash = _conflict(first, row)
        if clash:  # two different values for one node: kept first, the other shown, never silently lost
            self._quarantine(source, line, f"{_SINGULAR[kind]} {clip(repr(row['id']), 80)} is already loaded with "
                                           f"{clash} (from {self._node_source[kind][row['id']]}); kept that row", raw)
            return False
        for key, value in row.items():  # later rows fill what the first left blank
            if key == "props":
                merged = dict(value)
                merged.update(first.get("props") or {})
                if merged:
                    first["props"] = merged
            elif value not in ("", None) and first.get(key) in ("", None):
                first[key] = value
        self._count(source, "deduplicated")
        return False

    def _add_edge(self, kind: str, row: dict, key: tuple, source: str, line: int, raw: Any,
                  creates: Iterable[str] = ()) -> bool:
        self._count(source, "read")
        ends = (tuple((k, node_kind) for k, node_kind in EDGE_ENDPOINTS[kind] if node_kind in creates)
                if creates else ())
        first = self._edge_keys.get(key)
        if first is not None:
            clash = _conflict(first.row, row)
            if clash:  # the reason is amended in finish should that first row be quarantined itself
                first.conflicts.append(self._quarantine(
                    source, line, f"the same {_SINGULAR[kind]} is already loaded with {clash} "
                                  f"({first.source}:{first.line}){KEPT}", raw))
            else:
                self._count(source, "deduplicated")
                first.repeats.append((source, line, raw))  # quarantined with it, should it be
                # a repeat from a file that creates its users (or items) declares them for the event too
                first.creates += tuple(end for end in ends if end not in first.creates)
            return False
        edge = _Edge(kind, row, source, line, raw, creates=ends)
        self._edge_keys[key] = edge
        self._edges.append(edge)
        return True

    # ---------------------------------------------------------------- nodes

    def add_user(self, source: str, line: int, raw: Any, *, id: Any, props: dict | None = None,
                 lowercase: bool = False) -> bool:
        """Add a user node row."""
        try:
            row: dict = {"id": normalize_id(id, "user id", lowercase)}
            p = self._props(props, source, line)
            if p:
                row["props"] = p
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        return self._add_node("users", row, source, line, raw)

    def add_item(self, source: str, line: int, raw: Any, *, id: Any, title: Any = None,
                 description: Any = None, props: dict | None = None, lowercase: bool = False) -> bool:
        """Add an item node row (title and description are governed text)."""
        try:
            row: dict = {"id": normalize_id(id, "item id", lowercase),
                         "title": self._text(title, source, line, "title"),
                         "description": self._text(description, source, line, "description")}
            p = self._props(props, source, line)
            if p:
                row["props"] = p
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        return self._add_node("items", row, source, line, raw)

    def add_entity(self, source: str, line: int, raw: Any, *, id: Any, type: Any, name: Any = None,
                   lowercase: bool = False) -> bool:
        """Add an entity node row (attribute value or KG entity; ``type`` is a checked name)."""
        try:
            eid = normalize_id(id, "entity id", lowercase)
            row = {"id": eid, "type": check_name(type, "entity type"),
                   "name": self._text(eid if name is None else name, source, line, "name")}
            first = self._nodes["entities"].get(eid)
            if lowercase and first is not None and str(first.get("name")).casefold() == row["name"].casefold():
                row["name"] = first["name"]  # "Drama" and "drama" are one value under lowercase ids: no conflict
            if first is not None and first["type"] != row["type"]:  # two kinds of thing under one id
                raise GovernanceError(f"entity {clip(repr(eid), 80)} is already a {first['type']!r} (from "
                                      f"{self._node_source['entities'][eid]}); give each entity type its own ids "
                                      f"(entity_prefix)")
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        return self._add_node("entities", row, source, line, raw)

    def add_query(self, source: str, line: int, raw: Any, *, id: Any, text: Any, lowercase: bool = False) -> bool:
        """Add a query node row."""
        try:
            row = {"id": normalize_id(id, "query id", lowercase), "text": self._text(text, source, line, "text")}
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        return self._add_node("queries", row, source, line, raw)

    def declare(self, kind: str, id: Any, lowercase: bool = False) -> None:
        """Declare that a user/item/entity/query exists without a row of its own and without an
        edge (a LightGCN user alone on a line). Materialised in :meth:`finish` when no row adds it;
        counted in :attr:`LoadResult.created`, not in any file's ``read``. Invalid ids are ignored.
        The users or items of an event log are declared with the event instead
        (``add_interaction(creates=...)``), so that a quarantined event creates nothing."""
        try:
            self._declared[kind].add(normalize_id(id, kind, lowercase))
        except GovernanceError:
            pass

    def require(self, kind: str, id: Any, source: str, line: int, raw: Any, reason: str) -> None:
        """A line that only says a node exists (a LightGCN user alone on a line, whom the user list
        lacks): nothing to load when this load or the graph has that node; else, at :meth:`finish`,
        the node is created under the ``create`` policy, or the line quarantined with ``reason``."""
        try:
            self._required.append((kind, normalize_id(id, kind), source, line, raw, reason))
        except GovernanceError as e:
            self.quarantine(source, line, str(e), raw)

    def named_ids(self, kind: str) -> set[str]:
        """The ids of ``kind`` (``"items"``...) that this load's rows, declarations and edges name so
        far (an edge's end may yet be quarantined at :meth:`finish`, as an unknown reference)."""
        ids = set(self._nodes[kind]) | self._declared[kind]
        for edge in self._edges:
            ids.update(edge.row[key] for key, node_kind in EDGE_ENDPOINTS[edge.kind] if node_kind == kind)
        return ids

    # ---------------------------------------------------------------- edges

    def add_interaction(self, source: str, line: int, raw: Any, *, user: Any, item: Any,
                        kind: Any = "interact", weight: Any = None, ts: Any = None, split: Any = "",
                        lowercase: bool = False, weight_required: bool = False,
                        weight_range: tuple[float, float] | None = None, creates: Iterable[str] = ()) -> bool:
        """Add a user-item event; duplicates of ``(user, item, kind, ts)`` are deduplicated.
        A missing weight is 1 unless ``weight_required`` (a mapped rating column: a blank cell is
        no rating of 1); ``weight_range`` (low, high) quarantines weights outside it. ``creates``
        (``"users"``, ``"items"``) declares the event's user / item: created in :meth:`finish`
        when no row or the graph has it, and only while an accepted event declares it."""
        try:
            row = {"user": normalize_id(user, "user id", lowercase),
                   "item": normalize_id(item, "item id", lowercase),
                   "kind": check_name(kind, "interaction kind"),
                   "weight": parse_number(weight, "weight", default=None if weight_required else 1.0),
                   "ts": parse_timestamp(ts),
                   "split": "" if split is None else str(split).strip()}
            if weight_range is not None and not weight_range[0] <= row["weight"] <= weight_range[1]:
                low, high = weight_range
                raise GovernanceError(f"weight {row['weight']:g} is below {low:g}" if high == float("inf")
                                      else f"weight {row['weight']:g} is outside {low:g}..{high:g}")
            if row["split"] not in SPLITS:
                raise GovernanceError(f"unknown split {clip(repr(split), 40)} (expected train/valid/test)")
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        key = ("i", row["user"], row["item"], row["kind"], row["ts"])
        first = self._event_split.setdefault(key, row["split"])
        if first != row["split"]:  # e.g. a pair in both train.txt and test.txt
            kept = self._edge_keys[key]  # its reason is amended in finish should that row be quarantined itself
            self._count(source, "read")
            kept.conflicts.append(self._quarantine(
                source, line, f"the same event is already in split {first or '(none)'!r} ({kept.source}:"
                              f"{kept.line}){KEPT}", raw))
            return False
        return self._add_edge("interactions", row, key, source, line, raw, creates)

    def add_user_query(self, source: str, line: int, raw: Any, *, user: Any, query: Any, ts: Any = None,
                       lowercase: bool = False) -> bool:
        """Add a user-searched-query edge."""
        try:
            row = {"user": normalize_id(user, "user id", lowercase), "query": normalize_id(query, "query id", lowercase),
                   "ts": parse_timestamp(ts)}
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        return self._add_edge("user_queries", row, ("uq", row["user"], row["query"], row["ts"]), source, line, raw)

    def add_query_item(self, source: str, line: int, raw: Any, *, query: Any, item: Any,
                       relevance: Any = None, lowercase: bool = False, relevance_required: bool = False) -> bool:
        """Add a query-relevant-item edge. A missing relevance is 1 unless ``relevance_required`` (a
        mapped relevance column: a blank cell is no relevance of 1, as for weights)."""
        try:
            row = {"query": normalize_id(query, "query id", lowercase), "item": normalize_id(item, "item id", lowercase),
                   "relevance": parse_number(relevance, "relevance", default=None if relevance_required else 1.0)}
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        return self._add_edge("query_items", row, ("qi", row["query"], row["item"]), source, line, raw)

    def add_item_entity(self, source: str, line: int, raw: Any, *, item: Any, entity: Any, relation: Any,
                        lowercase: bool = False, stated: bool = False) -> bool:
        """Add an item-attribute edge; ``relation`` is a checked name stored as a property.
        ``stated``: the item's own row gives it (a catalogue file), so the load's values of that
        relation replace the item's stored ones (``"stated": True`` on the row)."""
        return self._add_attribute("item", item, entity, relation, source, line, raw, lowercase, stated)

    def add_user_entity(self, source: str, line: int, raw: Any, *, user: Any, entity: Any, relation: Any,
                        lowercase: bool = False, stated: bool = False) -> bool:
        """Add a user-attribute edge (occupation, gender, ...); ``relation`` is a checked name;
        ``stated`` as for :meth:`add_item_entity`."""
        return self._add_attribute("user", user, entity, relation, source, line, raw, lowercase, stated)

    def _add_attribute(self, owner: str, owner_id: Any, entity: Any, relation: Any, source: str, line: int,
                       raw: Any, lowercase: bool, stated: bool = False) -> bool:
        try:
            row = {owner: normalize_id(owner_id, f"{owner} id", lowercase),
                   "entity": normalize_id(entity, "entity id", lowercase),
                   "relation": check_relation(relation)}
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        key = (owner[0] + "e", row[owner], row["entity"], row["relation"])
        if stated:
            row["stated"] = True
            if key in self._edge_keys:  # a repeat of a link another file gave: stated all the same
                self._edge_keys[key].row["stated"] = True
        return self._add_edge(f"{owner}_entities", row, key, source, line, raw)

    def add_triple(self, source: str, line: int, raw: Any, *, head: Any, relation: Any, tail: Any,
                   lowercase: bool = False) -> bool:
        """Add a KG triple; unseen head/tail entities are created with type ``kg``."""
        try:
            row = {"head": normalize_id(head, "head id", lowercase),
                   "relation": check_relation(relation),
                   "tail": normalize_id(tail, "tail id", lowercase)}
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        return self._add_edge("triples", row, ("t", row["head"], row["relation"], row["tail"]), source, line, raw)

    def add_friend(self, source: str, line: int, raw: Any, *, user: Any, friend: Any, lowercase: bool = False) -> bool:
        """Add a directed user-user friend edge (self-loops are quarantined)."""
        try:
            row = {"user": normalize_id(user, "user id", lowercase), "friend": normalize_id(friend, "friend id", lowercase)}
            if row["user"] == row["friend"]:
                raise GovernanceError("user is their own friend")
        except GovernanceError as e:
            return self.quarantine(source, line, str(e), raw)
        return self._add_edge("friends", row, ("f", row["user"], row["friend"]), source, line, raw)

    # ---------------------------------------------------------------- result

    def _create(self, kind: str, node_id: str) -> None:
        # ``placeholder``: made up here, not given (the write path skips those only skipped events name)
        if kind == "users":
            row: dict = {"id": node_id, "placeholder": True}
        elif kind == "items":
            row = {"id": node_id, "title": "", "description": "", "placeholder": True}
        elif kind == "entities":  # placeholder: never overwrites a stored type or name (merge_entities)
            row = {"id": node_id, "type": "kg", "name": node_id, "placeholder": True}
        else:
            row = {"id": node_id, "text": ""}
        self._nodes[kind][node_id] = row
        self._result.created[kind] = self._result.created.get(kind, 0) + 1

    def _resolve(self, in_graph: dict[str, set[str]]) -> tuple[set[int], dict[str, set[str]]]:
        """Which edges stay and which nodes they declare that no row or the graph has.

        With ``unknown_reference = "quarantine"`` an edge is dropped (its ``id()`` returned) when an
        end is not a row, in the graph, or declared by an edge that stays; dropping an edge drops its
        declarations, which can leave the ends of others missing: those go too, until every edge
        left has all its ends. With ``"create"`` every edge stays.
        """
        nodes = self._nodes
        # a node only edges declare -> how many edges left declare it
        support: dict[str, dict[str, int]] = {k: {} for k in _NODE_KINDS}
        for edge in self._edges:
            for key, kind in edge.creates:
                node_id = edge.row[key]
                if node_id not in nodes[kind] and node_id not in in_graph[kind]:
                    support[kind][node_id] = support[kind].get(node_id, 0) + 1
        dropped: set[int] = set()
        if self.policy == "quarantine":
            queue = [edge for edge in self._edges if self._misses(edge, in_graph, support)]
            naming: dict[str, dict[str, list[_Edge]]] | None = None  # built when a node first loses its support
            while queue:
                edge = queue.pop()
                if id(edge) in dropped:
                    continue
                dropped.add(id(edge))
                for key, kind in edge.creates:
                    node_id = edge.row[key]
                    if node_id in support[kind]:
                        support[kind][node_id] -= 1
                        if not support[kind][node_id]:  # declared by no edge left: the edges naming it miss it
                            naming = self._naming(support) if naming is None else naming
                            queue.extend(naming[kind][node_id])
        return dropped, {kind: {node_id for node_id, n in counts.items() if n} for kind, counts in support.items()}

    def _misses(self, edge: _Edge, in_graph: dict[str, set[str]], support: dict[str, dict[str, int]]) -> bool:
        """Whether an end of ``edge`` is neither a row, in the graph, nor declared."""
        for key, kind in EDGE_ENDPOINTS[edge.kind]:
            node_id = edge.row[key]
            if node_id not in self._nodes[kind] and node_id not in in_graph[kind] and node_id not in support[kind]:
                return True
        return False

    def _naming(self, support: dict[str, dict[str, int]]) -> dict[str, dict[str, list[_Edge]]]:
        """For each declared-only node, the edges that name it."""
        naming: dict[str, dict[str, list[_Edge]]] = {kind: {node_id: [] for node_id in ids}
                                                      for kind, ids in support.items()}
        for edge in self._edges:
            for key, kind in EDGE_ENDPOINTS[edge.kind]:
                edges = naming[kind].get(edge.row[key])
                if edges is not None:
                    edges.append(edge)
        return naming

    def _reject(self, edge: _Edge, reason: str) -> None:
        """Quarantine an edge whose ends do not resolve, with its repeats, and say so in the reasons
        of the rows that conflicted with it (they said that row was kept)."""
        self._quarantine(edge.source, edge.line, reason, edge.raw)
        for src, line, raw in edge.repeats:  # no longer repeats of a loaded row
            self._count(src, "deduplicated", -1)
            self._quarantine(src, line, f"{reason} (a repeat of {edge.source}:{edge.line})", raw)
        for entry in edge.conflicts:
            entry["reason"] = entry["reason"].removesuffix(KEPT) + f"; that row is quarantined too ({reason})"

    def _in_graph(self) -> dict[str, set[str]]:
        """Ids that edges reference without a row in this load, and that the graph already holds."""
        found: dict[str, set[str]] = {k: set() for k in _NODE_KINDS}
        if self._known is None:
            return found
        wanted: dict[str, set[str]] = {k: set() for k in _NODE_KINDS}
        for edge in self._edges:
            ends = ((("head", "entities"), ("tail", "entities")) if edge.kind == "triples"
                    else EDGE_ENDPOINTS[edge.kind])
            for key, kind in ends:
                if edge.row[key] not in self._nodes[kind]:
                    wanted[kind].add(edge.row[key])
        for kind, ids in self._declared.items():  # declared without an edge (a LightGCN user alone): perhaps stored
            wanted[kind] |= ids - self._nodes[kind].keys()
        for kind, node_id, *_ in self._required:
            if node_id not in self._nodes[kind]:
                wanted[kind].add(node_id)
        for kind, ids in wanted.items():
            if ids:
                found[kind] = set(self._known(kind, sorted(ids))) & ids
                if found[kind]:
                    self._result.in_graph[kind] = len(found[kind])
        return found

    def finish(self) -> LoadResult:
        """Resolve references, fill the records and return the :class:`LoadResult`.

        The governor must not be used after this call.
        """
        res = self._result
        nodes = self._nodes
        accepted: list[_Edge] = []
        in_graph = self._in_graph()
        for kind, ids in self._declared.items():  # those the graph holds are not created (nor overwritten)
            for node_id in sorted(ids - nodes[kind].keys() - in_graph[kind]):
                self._create(kind, node_id)
        for edge in self._edges:  # KG triples define their entities (before links are checked)
            if edge.kind == "triples":
                for end in ("head", "tail"):
                    if edge.row[end] not in nodes["entities"] and edge.row[end] not in in_graph["entities"]:
                        self._create("entities", edge.row[end])
        for kind, node_id, source, line, raw, reason in self._required:
            if node_id in nodes[kind] or node_id in in_graph[kind]:
                continue
            if self.policy == "create":
                self._create(kind, node_id)
            else:
                self.quarantine(source, line, reason, raw)
        dropped, declared = self._resolve(in_graph)
        for kind, ids in declared.items():  # by the edges that stay
            for node_id in sorted(ids):
                self._create(kind, node_id)
        for edge in self._edges:
            if id(edge) in dropped:
                own = set(edge.creates)  # its own declarations are not why it is dropped
                self._reject(edge, "; ".join(f"unknown {_SINGULAR[kind]} {edge.row[key]!r}"
                                             for key, kind in EDGE_ENDPOINTS[edge.kind] if (key, kind) not in own
                                             and edge.row[key] not in nodes[kind]
                                             and edge.row[key] not in in_graph[kind]))
                continue
            if self.policy == "create":
                for key, kind in EDGE_ENDPOINTS[edge.kind]:
                    if edge.row[key] not in nodes[kind] and edge.row[key] not in in_graph[kind]:
                        self._create(kind, edge.row[key])
            accepted.append(edge)
        for kind in _NODE_KINDS:
            getattr(res.records, kind).extend(nodes[kind].values())
            for src in self._node_source[kind].values():
                self._count(src, "loaded")
        for edge in accepted:
            getattr(res.records, edge.kind).append(edge.row)
            self._count(edge.source, "loaded")
        if res.quarantine:
            logger.info("governance: %d rows quarantined, %d loaded", len(res.quarantine),
                        res.totals()["loaded"])
        return res


# --------------------------------------------------------------------------- helpers


def govern_records(records: GraphRecords, cfg: "IngestConfig | None" = None,
                   source: str = "records") -> LoadResult:
    """Run already-built canonical rows (a generator's or an ungoverned reader's) through governance.

    Args:
        records: Rows to check.
        cfg: Ingest settings.
        source: Name used as the ``source`` of every row in the report and quarantine.

    Returns:
        The governed :class:`LoadResult` (line numbers are row positions within each kind).
    """
    gov = Governor(cfg)
    for n, r in enumerate(records.users, 1):
        gov.add_user(source, n, r, id=r.get("id"), props=r.get("props"))
    for n, r in enumerate(records.items, 1):
        gov.add_item(source, n, r, id=r.get("id"), title=r.get("title"), description=r.get("description"),
                     props=r.get("props"))
    for n, r in enumerate(records.queries, 1):
        gov.add_query(source, n, r, id=r.get("id"), text=r.get("text"))
    for n, r in enumerate(records.entities, 1):
        gov.add_entity(source, n, r, id=r.get("id"), type=r.get("type"), name=r.get("name"))
    for n, r in enumerate(records.interactions, 1):
        gov.add_interaction(source, n, r, user=r.get("user"), item=r.get("item"), kind=r.get("kind", "interact"),
                            weight=r.get("weight"), ts=r.get("ts"), split=r.get("split", ""))
    for n, r in enumerate(records.user_queries, 1):
        gov.add_user_query(source, n, r, user=r.get("user"), query=r.get("query"), ts=r.get("ts"))
    for n, r in enumerate(records.query_items, 1):
        gov.add_query_item(source, n, r, query=r.get("query"), item=r.get("item"), relevance=r.get("relevance"))
    for n, r in enumerate(records.item_entities, 1):
        gov.add_item_entity(source, n, r, item=r.get("item"), entity=r.get("entity"), relation=r.get("relation"))
    for n, r in enumerate(records.user_entities, 1):
        gov.add_user_entity(source, n, r, user=r.get("user"), entity=r.get("entity"), relation=r.get("relation"))
    for n, r in enumerate(records.triples, 1):
        gov.add_triple(source, n, r, head=r.get("head"), relation=r.get("relation"), tail=r.get("tail"))
    for n, r in enumerate(records.friends, 1):
        gov.add_friend(source, n, r, user=r.get("user"), friend=r.get("friend"))
    return gov.finish()


def write_quarantine(result: LoadResult, path: str | Path) -> Path:
    """Write the quarantined rows as JSON Lines (one ``{"source","line","reason","raw"}`` a line).

    Returns:
        The path written (parent directories are created).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a lone surrogate (why a row is here) goes in as its \\udxxx escape, which JSON reads back as it was
    with path.open("w", encoding="utf-8", errors="backslashreplace") as fh:
        for entry in result.quarantine:
            fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
    return path


def quarantine_summary(result: LoadResult, top: int = 3) -> list[str]:
    """One line per source file with quarantined records (a row's nodes and links count each, as in
    the reconciliation report): how many of how many it read, and its most
    common reasons (quoted values folded, so "unknown item 'P8'" and 'P9' count as one)."""
    reasons: dict[str, Counter] = {}
    for entry in result.quarantine:
        reasons.setdefault(entry["source"], Counter())[re.sub(r"'[^']*'", "'…'", entry["reason"])] += 1
    lines = []
    for source, counts in result.report.items():
        if counts.get("quarantined"):
            common = "; ".join(f"{n} x {reason}" for reason, n in reasons.get(source, Counter()).most_common(top))
            lines.append(f"{source}: {counts['quarantined']} of {counts['read']} records quarantined ({common})")
    return lines


def reconciliation_json(result: LoadResult) -> str:
    """The reconciliation report as a JSON string (per file, totals, created nodes, truncations)."""
    return json.dumps({"files": result.report, "totals": result.totals(), "reconciles": result.reconciles(),
                       "created": result.created, "in_graph": result.in_graph,
                       "truncated": len(result.truncated),
                       "records": result.records.counts()}, indent=2, sort_keys=True)
