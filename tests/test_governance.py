"""Governance rules on hand-written rows and files (pure Python, no Neo4j)."""
from __future__ import annotations

import json
import math

import pytest

from kg.governance import (Governor, GovernanceError, LoadResult, check_name, check_relation, govern_records, normalize_id,
                           parse_number, parse_timestamp, reconciliation_json, write_quarantine)
from kg.records import GraphRecords
from kg.sources.recbole import read_recbole
from kg.sources.tabular import MappingError, read_tabular
from kgrec.config import IngestConfig

INJECTION = "x'}) DETACH DELETE n //"
EVENTS = {"files": [{"path": "events.csv", "role": "interactions", "user": "user", "item": "item",
                     "weight": "rating", "timestamp": "ts", "kind_value": "rating", "create_nodes": True}]}


def _reconciles(res: LoadResult) -> None:
    assert res.reconciles(), res.report
    for counts in res.report.values():
        assert counts["read"] == counts["loaded"] + counts["quarantined"] + counts["deduplicated"]
    assert res.totals()["quarantined"] == len(res.quarantine)
    for q in res.quarantine:
        assert set(q) == {"source", "line", "reason", "raw"} and q["reason"]


def _reasons(res: LoadResult) -> dict[int, str]:
    return {q["line"]: q["reason"] for q in res.quarantine}


def _write(tmp_path, name: str, data: str | bytes):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- value rules


def test_normalize_id_nfkc_strip_no_lowercase():
    assert normalize_id("  ＵＳＥＲ１\t") == "USER1"
    for invisible in ("u\u200b2", "\ufeffu2", "u\u00ad2", "u2\u2060", "u\u061c2", "u\u202e2", "u\u20692"):  # pasted ids: not a second, invisible u2
        assert normalize_id(invisible) == "u2"
    assert normalize_id("a\u200cb") == "a\u200cb"  # a zero-width non-joiner tells Persian words apart: kept
    assert normalize_id(42) == "42"
    assert normalize_id("AbC", lowercase=True) == "abc"
    for bad in ("", "   ", None, 1.5, True, "a\x00b", "x" * 1001):
        with pytest.raises(GovernanceError):
            normalize_id(bad)


@pytest.mark.parametrize("value,expected", [(None, 1.0), ("", 1.0), ("3", 3.0), (0, 0.0), ("2.5 ", 2.5)])
def test_parse_number_ok(value, expected):
    assert parse_number(value) == expected


@pytest.mark.parametrize("value,reason", [("nan", "NaN"), (math.nan, "NaN"), ("-1", "negative"), ("inf", "infinite"),
                                          ("abc", "not a number"), (True, "bool"),
                                          ("1_000", "not a number"), ("\u0661\u0662", "not a number"),
                                          ("\uff13", "not a number")])
def test_parse_number_rejects(value, reason):
    with pytest.raises(GovernanceError, match=reason):
        parse_number(value)


def test_parse_timestamp():
    assert parse_timestamp("881250949") == 881250949
    # down exactly: through a float, a fraction just below the next second was that second
    assert parse_timestamp("1700000000.99999999") == 1700000000 and parse_timestamp("95000000000.999999") == 95000000000
    assert parse_timestamp("-1700000000.99999999") == -1700000001 and parse_timestamp("1.7e9") == 1700000000
    # exponents past Decimal's range: its InvalidOperation failed the whole load, not one row
    assert parse_timestamp("0e99999999999999999999") == 0 and parse_timestamp("1e-99999999999999999999") == 0
    assert parse_timestamp("-1e-99999999999999999999") == -1
    assert parse_timestamp(881250949.7) == 881250949
    assert parse_timestamp("1970-01-02T00:00:00Z") == 86400
    assert parse_timestamp("1970-01-02T01:00:00+01:00") == 86400
    assert parse_timestamp("1970-01-02") == 86400
    assert parse_timestamp("") == 0 and parse_timestamp(None) == 0
    for bad in ("yesterday", "nan", "2020-13-45", [1], "1e20", 2**63, "1_600_000_000",
                "\u0661\u0666\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660"):  # separators, Arabic-Indic digits
        with pytest.raises(GovernanceError):
            parse_timestamp(bad)
    assert parse_timestamp(99_999_999_999) == 99_999_999_999  # the year 5138: still seconds
    for millis in (1_700_000_000_000, "1700000000000", -1_700_000_000_000):
        with pytest.raises(GovernanceError, match="milliseconds"):
            parse_timestamp(millis)
    assert parse_timestamp("4999-12-31T00:00:00Z") == 95_617_497_600
    with pytest.raises(GovernanceError, match="placeholder"):  # "never": it would lift the feed's watermark
        parse_timestamp("9999-12-31T00:00:00Z")


@pytest.mark.parametrize("name", ["genre", "music.artist.origin", "a:b-c_d", "x" * 100])
def test_check_name_ok(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "has space", "x" * 101, "genre`]->(n) DETACH DELETE n//", "a)-[:X]->(b",
                                  "Label:`Admin`", INJECTION, 7])
def test_check_name_rejects(name):
    with pytest.raises(GovernanceError):
        check_name(name)


@pytest.mark.parametrize("name, stored", [
    ("genre", "genre"), ("http://xmlns.com/foaf/0.1/knows", "http://xmlns.com/foaf/0.1/knows"),
    ("<http://rdf.freebase.com/ns/film.film.genre>", "http://rdf.freebase.com/ns/film.film.genre"),
    ("http://www.w3.org/1999/02/22-rdf-syntax-ns#type", "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"),
    ("urn:isbn:0451450523", "urn:isbn:0451450523")])
def test_relation_names_may_be_iris(name, stored):
    """RDF predicates are IRIs: a relation name may be one (stored as a property value, never Cypher)."""
    assert check_relation(name) == stored
    assert check_relation(name[:5] + "\u200b" + name[5:]) == stored  # no invisible twin


@pytest.mark.parametrize("name", ["", "has space", "http://x y", "<genre>", "http://x/<b>", "x" * 101,
                                  "genre`]->(n) DETACH DELETE n//", INJECTION, "http://x/" + "a" * 1000, 7,
                                  "http://x.org/\ud800", "http://x.org/a\x85b", "http://x.org/\x9f", "http://x.org/\ufffe"])
def test_check_relation_rejects(name):
    with pytest.raises(GovernanceError, match="relation"):
        check_relation(name)


# ----------------------------------------------------------------------------- governor


def test_unknown_references_quarantined():
    gov = Governor(IngestConfig(unknown_reference="quarantine"))
    gov.add_user("u.csv", 1, "u1", id="u1")
    gov.add_item("i.csv", 1, "i1", id="i1")
    gov.add_interaction("e.csv", 1, "r1", user="u1", item="i1")
    gov.add_interaction("e.csv", 2, "r2", user="u1", item="ghost")
    gov.add_interaction("e.csv", 3, "r3", user="nobody", item="ghost")
    gov.add_friend("f.csv", 1, "f", user="u1", friend="nobody")
    res = gov.finish()
    _reconciles(res)
    assert len(res.records.interactions) == 1 and not res.records.friends
    assert "unknown item 'ghost'" in _reasons(res)[2]
    assert "unknown user 'nobody'" in _reasons(res)[3] and "unknown item" in _reasons(res)[3]
    assert res.report["e.csv"] == {"read": 3, "loaded": 1, "quarantined": 2, "deduplicated": 0}
    assert res.created == {}


def test_unknown_references_created():
    gov = Governor(IngestConfig(unknown_reference="create"))
    gov.add_user("u.csv", 1, "u1", id="u1")
    gov.add_interaction("e.csv", 1, "r1", user="u1", item="i9")
    gov.add_interaction("e.csv", 2, "r2", user="u2", item="i9")
    gov.add_item_entity("e.csv", 3, "r3", item="i9", entity="genre:x", relation="genre")
    res = gov.finish()
    _reconciles(res)
    assert not res.quarantine
    assert {u["id"] for u in res.records.users} == {"u1", "u2"}
    assert res.records.items == [{"id": "i9", "title": "", "description": "", "placeholder": True}]
    assert res.created == {"users": 1, "items": 1, "entities": 1}


def test_bad_policy_rejected():
    with pytest.raises(ValueError, match="unknown_reference"):
        Governor(IngestConfig(unknown_reference="ignore"))


def test_duplicates_merged_and_counted():
    gov = Governor()
    gov.add_item("a.csv", 1, "r", id="i1", title="")
    gov.add_item("a.csv", 2, "r", id=" i1 ", title="Late title", props={"year": 1999})
    gov.add_item("b.csv", 1, "r", id="i1", title="Another title")  # a conflict: shown, not silently dropped
    gov.add_user("a.csv", 3, "r", id="u1")
    for line in (4, 5):
        gov.add_interaction("a.csv", line, "r", user="u1", item="i1", kind="view", ts=100)
    gov.add_interaction("a.csv", 6, "r", user="u1", item="i1", kind="view", ts=101)  # other event
    gov.add_interaction("a.csv", 7, "r", user="u1", item="i1", kind="click", ts=100)  # other kind
    gov.add_interaction("a.csv", 8, "r", user="u1", item="i1", kind="click", ts=100, weight=5)  # another weight
    res = gov.finish()
    _reconciles(res)
    assert res.records.items == [{"id": "i1", "title": "Late title", "description": "", "props": {"year": 1999}}]
    assert len(res.records.interactions) == 3
    assert res.report["a.csv"]["deduplicated"] == 2 and res.report["b.csv"] == {
        "read": 1, "loaded": 0, "quarantined": 1, "deduplicated": 0}
    reasons = {q["source"] + ":" + str(q["line"]): q["reason"] for q in res.quarantine}
    assert reasons["b.csv:1"] == ("item 'i1' is already loaded with title 'Late title' (not 'Another title') "
                                  "(from a.csv); kept that row")
    assert reasons["a.csv:8"].startswith("the same interaction is already loaded with weight")
    assert "(a.csv:7)" in reasons["a.csv:8"]


def test_conflict_reasons_name_each_kind_in_the_singular():
    """``kind[:-1]`` named an entity "entitie" and a query "querie"."""
    from kg.governance import EDGE_ENDPOINTS, _NODE_KINDS, _SINGULAR

    gov = Governor()
    gov.add_entity("e.csv", 1, "r", id="e1", type="genre", name="A")
    gov.add_entity("e.csv", 2, "r", id="e1", type="genre", name="B")
    gov.add_query("q.csv", 1, "r", id="q1", text="x")
    gov.add_query("q.csv", 2, "r", id="q1", text="y")
    res = gov.finish()
    _reconciles(res)
    assert [q["reason"].split(" is already")[0] for q in res.quarantine] == ["entity 'e1'", "query 'q1'"]
    assert set(_SINGULAR) == {*_NODE_KINDS, *EDGE_ENDPOINTS}
    assert _SINGULAR["item_entities"] == "item-entity" and _SINGULAR["user_queries"] == "user-query"


def test_out_of_range_integers_and_split_conflicts_are_quarantined():
    """What Neo4j cannot store, or an event given two splits, is quarantined with its reason
    (an int beyond 64 bits used to abort the whole ingest after earlier batches had committed)."""
    gov = Governor()
    gov.add_user("u.csv", 1, "r", id="u1", props={"visits": 2**63})
    gov.add_user("u.csv", 2, "r", id="u2", props={"visits": 2**63 - 1})
    gov.add_item("i.csv", 1, "r", id="i1")
    gov.add_interaction("train.txt", 1, "r", user="u2", item="i1", split="train")
    gov.add_interaction("test.txt", 1, "r", user="u2", item="i1", split="test")
    gov.add_interaction("train.txt", 2, "r", user="u2", item="i1", split="train")  # a plain repeat
    res = gov.finish()
    _reconciles(res)
    assert [u["id"] for u in res.records.users] == ["u2"]
    assert [i["split"] for i in res.records.interactions] == ["train"]
    assert {(q["source"], q["reason"]) for q in res.quarantine} == {
        ("u.csv", "property visits 9223372036854775808 is outside the 64-bit integer range"),
        ("test.txt", "the same event is already in split 'train' (train.txt:1); kept that row")}
    assert res.report["train.txt"]["deduplicated"] == 1


def test_text_normalised_empty_and_megabyte():
    gov = Governor(IngestConfig(max_text_chars=1000))
    gov.add_item("i.csv", 1, "r", id="i1", title="  Ｔｏｙ   Story\n(1995) ", description="Alien³ ™ ½")
    gov.add_item("i.csv", 2, "r", id="i2", title="big", description="word " * 220_000)  # ~1.1 MB
    gov.add_item("i.csv", 3, "r", id="i3", title=None)
    gov.add_item("i.csv", 4, "r", id="i4", title="Nul\x00led\x1b[0m\x7f title\x85", description="\x00\x01")
    res = gov.finish()
    _reconciles(res)
    by_id = {r["id"]: r for r in res.records.items}
    # NFC, not the ids' NFKC: the text keeps its full-width letters, superscripts and fractions
    assert by_id["i1"]["title"] == "Ｔｏｙ Story (1995)" and by_id["i1"]["description"] == "Alien³ ™ ½"
    assert len(by_id["i2"]["description"]) == 1000
    assert res.truncated == [{"source": "i.csv", "line": 2, "field": "description", "chars": 220_000 * 5 - 1}]
    assert by_id["i3"]["title"] == ""
    # control characters (a NUL, a terminal escape, DEL, NEL) count as spaces: they loaded as they were
    assert by_id["i4"]["title"] == "Nul led [0m title" and by_id["i4"]["description"] == ""
    assert not res.quarantine


def test_a_semicolon_inside_a_comment_or_a_line_ends_no_schema_statement():
    import cypher

    text = ("// drops the old index; then creates one\nDROP INDEX a IF EXISTS;\n"
            "CREATE INDEX b IF NOT EXISTS FOR (n:N) ON (n.x);  \nRETURN 'a;b' AS s;\n// trailing\n")
    assert cypher.statements(text) == ["DROP INDEX a IF EXISTS", "CREATE INDEX b IF NOT EXISTS FOR (n:N) ON (n.x)",
                                       "RETURN 'a;b' AS s"]
    assert len(cypher.statements(cypher.load("schema/constraints"))) == 15


def test_cypher_looking_strings_are_data():
    gov = Governor()
    gov.add_user("u", 1, "r", id=INJECTION)
    gov.add_item("i", 1, "r", id="i1", title=INJECTION, description="MATCH (n) DETACH DELETE n",
                 props={"note": "'}]->(x:Admin) //"})
    gov.add_entity("e", 1, "r", id="e1", type="genre", name=INJECTION)
    gov.add_interaction("x", 1, "r", user=INJECTION, item="i1", kind="view")
    gov.add_interaction("x", 2, "r", user=INJECTION, item="i1", kind="view`]->(n) DELETE n //")
    gov.add_item_entity("x", 3, "r", item="i1", entity="e1", relation="HAS_ATTRIBUTE]->(n:Admin)<-[:X")
    gov.add_item_entity("x", 4, "r", item="i1", entity="e1", relation="genre")
    gov.add_triple("x", 5, "r", head="e1", relation="`; DROP CONSTRAINT x; //", tail="e2")
    gov.add_triple("x", 6, "r", head="e1", relation="film.actor.film", tail="e2")
    gov.add_entity("e", 2, "r", id="e3", type="Genre:Admin`)", name="x")
    gov.add_item("i", 2, "r", id="i2", props={"`x` = 1 SET n:Admin //": "v"})
    gov.add_item("i", 3, "r", id="i3", props={"embedding": "0.1 0.2"})  # would overwrite the written-back vector
    res = gov.finish()
    _reconciles(res)
    assert res.records.users[0]["id"] == INJECTION
    assert res.records.items[0]["title"] == INJECTION
    assert res.records.interactions == [{"user": INJECTION, "item": "i1", "kind": "view", "weight": 1.0, "ts": 0,
                                         "split": ""}]
    assert [r["relation"] for r in res.records.item_entities] == ["genre"]
    assert [r["relation"] for r in res.records.triples] == ["film.actor.film"]
    reasons = {q["line"]: q["reason"] for q in res.quarantine if q["source"] == "x"}
    assert "interaction kind" in reasons[2] and "invalid relation name" in reasons[3]
    assert {q["source"]: q["reason"] for q in res.quarantine if q["source"] == "e"}["e"].startswith("invalid entity type")
    assert sum("invalid property name" in q["reason"] for q in res.quarantine) == 2
    assert len(res.quarantine) == 6


def test_govern_records_and_outputs(tmp_path):
    records = GraphRecords(users=[{"id": "u1"}], items=[{"id": "i1"}],
                           interactions=[{"user": "u1", "item": "i1", "weight": -3.0},
                                         {"user": "u1", "item": "i1", "weight": 2.0, "ts": 5, "split": "train"},
                                         {"user": "u1", "item": "i1", "weight": 2.0, "ts": 5, "split": "bogus"}])
    res = govern_records(records, source="synthetic")
    _reconciles(res)
    assert res.report["synthetic"] == {"read": 5, "loaded": 3, "quarantined": 2, "deduplicated": 0}
    path = write_quarantine(res, tmp_path / "q" / "quarantine.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [q["reason"] for q in lines] == ["weight is negative (-3)", "unknown split 'bogus' (expected train/valid/test)"]
    rec = json.loads(reconciliation_json(res))
    assert rec["reconciles"] and rec["totals"]["read"] == 5 and rec["records"]["interactions"] == 1


# ----------------------------------------------------------------------------- malformed files


def test_csv_quoting_types_and_nan(tmp_path):
    _write(tmp_path, "events.csv", "\n".join([
        "user,item,rating,ts",
        'u1,i1,4,881250949',                  # 2 ok
        '"u2","i,2",5,2020-01-01T00:00:00Z',  # 3 ok, quoted delimiter
        '"u3,i3,5,1',                         # 4 unterminated quote
        '"u4"x,i4,5,1',                       # 5 junk after quote
        'u5,i5,abc,1',                        # 6 rating not a number
        'u6,i6,NaN,1',                        # 7 NaN
        'u7,i7,-2,1',                         # 8 negative
        'u8,i8,inf,1',                        # 9 infinite
        'u9,i9,3,yesterday',                  # 10 bad timestamp
        'u10,i10,3',                          # 11 missing field
        'u11,i11,3,1,extra',                  # 12 extra field
        '',                                   # blank: skipped
        ',i12,3,1',                           # 14 empty user id
        'u1,i1,4,881250949',                  # 15 duplicate event
    ]) + "\n")
    res = read_tabular(tmp_path, EVENTS)
    _reconciles(res)
    r = _reasons(res)
    assert "malformed CSV" in r[4] and "malformed CSV" in r[5]
    assert "not a number" in r[6] and "NaN" in r[7] and "negative" in r[8] and "infinite" in r[9]
    assert "timestamp" in r[10] and "expected 4 fields, got 3" in r[11] and "got 5" in r[12]
    assert "empty user id" in r[14]
    assert res.report["events.csv"] == {"read": 13, "loaded": 2, "quarantined": 10, "deduplicated": 1}
    assert {(i["user"], i["item"], i["ts"]) for i in res.records.interactions} == {
        ("u1", "i1", 881250949), ("u2", "i,2", 1577836800)}
    assert res.created == {"users": 2, "items": 2}


def test_bad_encoding_quarantined_with_replacement(tmp_path):
    _write(tmp_path, "events.csv", b"user,item,rating,ts\r\nu1,caf\xc3\xa9,1,1\r\nu2,caf\xe9,1,1\r\nu3,i3,1,1\r\n")
    res = read_tabular(tmp_path, EVENTS)
    _reconciles(res)
    assert [i["item"] for i in res.records.interactions] == ["café", "i3"]
    (q,) = res.quarantine
    assert q["line"] == 3 and "invalid utf-8" in q["reason"] and "\ufffd" in q["raw"]


def test_latin1_and_bom(tmp_path):
    _write(tmp_path, "events.csv", b"\xef\xbb\xbfuser,item,rating,ts\nu1,caf\xe9,1,1\nu2,caf\xc3\xa9,1,1\n")
    res = read_tabular(tmp_path, EVENTS)  # the BOM goes, so the header's first column is "user"
    _reconciles(res)
    assert [(r["user"], r["item"]) for r in res.records.interactions] == [("u2", "café")]
    assert len(res.quarantine) == 1 and "invalid utf-8" in res.quarantine[0]["reason"]  # the latin-1 byte
    res = read_tabular(tmp_path, {"files": [{**EVENTS["files"][0], "encoding": "latin-1"}]})
    assert res.records.interactions[0]["item"] == "café" and not res.quarantine


@pytest.mark.parametrize("label", ["latin-1", "ISO-8859-1", "latin1"])
def test_a_latin1_file_reads_bytes_0x80_to_0x9f_as_windows_1252(tmp_path, label):
    """Files labelled latin-1 are mostly windows-1252: its curly quotes and euro sign were latin-1's
    control characters, which text turned into spaces without a word."""
    _write(tmp_path, "items.csv", b"id,title\n1,Caf\xe9 \x93Noir\x94 \x80 5\x81x\n")
    res = read_tabular(tmp_path, {"files": [{"path": "items.csv", "role": "items", "id": "id", "title": "title",
                                             "encoding": label}]})
    _reconciles(res)
    assert res.records.items[0]["title"] == "Café \u201cNoir\u201d \u20ac 5 x"  # 0x81 is unassigned: a control still


def test_missing_column_names_it(tmp_path):
    _write(tmp_path, "events.csv", "user,item,ts\nu1,i1,1\n")
    with pytest.raises(MappingError, match="'rating'"):
        read_tabular(tmp_path, EVENTS)


def test_mapping_errors():
    with pytest.raises(MappingError, match="unknown role"):
        read_tabular(".", {"files": [{"role": "edges"}]})
    with pytest.raises(MappingError, match="field 'item'"):
        read_tabular(".", {"files": [{"role": "interactions", "user": "u"}]})
    with pytest.raises(MappingError, match="property name"):
        read_tabular(".", {"files": [{"role": "users", "id": "id", "props": ["bad name) SET n:Admin"]}]})


def test_mapping_keys_a_role_does_not_read_are_refused(tmp_path):
    """A misspelt field loaded the rows without it (weight 1.0, ts 0, a blank rating too) and an
    option of another role did nothing: both are errors naming the key and what the role reads."""
    _write(tmp_path, "r.csv", "user,item,rating,ts\nu1,i1,5,881250949\nu1,i2,,881250950\n")
    typo = {"role": "interactions", "user": "user", "item": "item", "weigth": "rating", "timestmp": "ts",
            "create_nodes": True}
    with pytest.raises(MappingError, match="'timestmp' \\(did you mean 'timestamp'\\?\\), 'weigth' "
                                           "\\(did you mean 'weight'\\?\\).*weight_range"):
        read_tabular(tmp_path / "r.csv", {"files": [typo]})
    with pytest.raises(MappingError, match="\\(friends\\): unknown key\\(s\\) 'create_users'"):
        read_tabular(".", {"files": [{"role": "friends", "user": "a", "friend": "b", "create_users": True}]})
    with pytest.raises(MappingError, match="unknown attributes key\\(s\\) \\['seperator'\\]"):
        read_tabular(".", {"files": [{"role": "items", "id": "id", "attributes": [{"column": "g", "seperator": "|"}]}]})
    with pytest.raises(MappingError, match="unknown flags key\\(s\\) \\['off'\\]"):
        read_tabular(".", {"files": [{"role": "items", "id": "id", "flags": {"columns": ["g"], "off": "-"}}]})
    with pytest.raises(MappingError, match="'lowercase_id' \\(did you mean 'lowercase_ids'\\?\\)"):
        read_tabular(".", {"lowercase_id": True, "files": [{"role": "users", "id": "id"}]})  # ids kept as given
    res = read_tabular(tmp_path / "r.csv", {"files": [{**{k: v for k, v in typo.items() if k not in ("weigth", "timestmp")},
                                                        "weight": "rating", "timestamp": "ts"}]})
    assert [(r["weight"], r["ts"]) for r in res.records.interactions] == [(5.0, 881250949)]
    assert [q["reason"] for q in res.quarantine] == ["missing weight"]


def test_packaged_mappings_pass_the_key_check():
    from kg.sources.ml100k import MAPPING
    from kg.sources.triples import MAPPINGS
    from kg.sources.tabular import load_mapping

    for mapping in (MAPPING, MAPPINGS / "lastfm.toml", MAPPINGS / "gowalla.toml"):
        assert load_mapping(mapping)["files"]


def test_jsonl_and_attributes(tmp_path):
    rows = [{"item": "i1", "title": "A", "cats": "x|y", "brand": "acme"},
            {"item": "i2", "title": "B" * 50, "cats": "", "brand": INJECTION},
            "not an object", {"item": "i3"}]
    _write(tmp_path, "items.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    mapping = {"files": [{"path": "items.jsonl", "role": "items", "format": "jsonl", "id": "item", "title": "title",
                          "attributes": [{"column": "cats", "relation": "category", "separator": "|"},
                                         {"column": "brand", "relation": "brand"}]}]}
    res = read_tabular(tmp_path, mapping, IngestConfig(max_text_chars=10))
    _reconciles(res)
    assert [i["id"] for i in res.records.items] == ["i1", "i2"]
    assert res.records.items[1]["title"] == "B" * 10 and res.truncated[0]["field"] == "title"
    assert {e["id"] for e in res.records.entities} == {"category:x", "category:y", "brand:acme", f"brand:{INJECTION}"}
    assert {(r["item"], r["relation"]) for r in res.records.item_entities} == {
        ("i1", "category"), ("i1", "brand"), ("i2", "brand")}
    assert sorted(q["reason"].split(" (")[0] for q in res.quarantine) == [
        "JSON line is not an object", "invalid JSON", "missing field 'title'"]


def test_relation_from_column_injection_quarantined(tmp_path):
    _write(tmp_path, "kg.tsv", "h\tr\tt\ne1\tfilm.actor.film\te2\ne1\tX]->(n) DETACH DELETE n //\te3\n"
                               "e1\tRELATED`:Admin\te4\n")
    mapping = {"files": [{"path": "kg.tsv", "role": "triples", "delimiter": "\t", "head": "h", "relation": "r",
                          "tail": "t"}]}
    res = read_tabular(tmp_path, mapping)
    _reconciles(res)
    assert [t["relation"] for t in res.records.triples] == ["film.actor.film"]
    assert len(res.quarantine) == 2 and all("invalid relation name" in q["reason"] for q in res.quarantine)


def test_toml_mapping_and_lowercase_ids(tmp_path):
    _write(tmp_path, "events.tsv", "User\tItem\tWhen\nAlice\tBook-1\t2021-05-01T10:00:00\nALICE\tbook-1\t\n")
    mapping = tmp_path / "m.toml"
    mapping.write_text('lowercase_ids = true\n[[files]]\npath = "events.tsv"\nrole = "interactions"\n'
                       'delimiter = "\\t"\nuser = "User"\nitem = "Item"\ntimestamp = "When"\n'
                       'kind_value = "view"\ncreate_nodes = true\n')
    res = read_tabular(tmp_path, mapping)
    _reconciles(res)
    assert [(i["user"], i["item"], i["ts"]) for i in res.records.interactions] == [
        ("alice", "book-1", 1619863200), ("alice", "book-1", 0)]
    assert res.records.users == [{"id": "alice", "placeholder": True}]
    plain = read_tabular(tmp_path / "events.tsv", {"files": [{**{"role": "interactions", "delimiter": "\t",
                                                               "user": "User", "item": "Item"}}]},
                         IngestConfig(unknown_reference="create"))
    assert {i["user"] for i in plain.records.interactions} == {"Alice", "ALICE"}


def test_attribute_values_that_differ_only_in_case_are_one_entity_under_lowercase_ids(tmp_path):
    """``Drama`` then ``drama`` under lowercase ids quarantined the second row as a name conflict,
    though its link loaded; one entity, named as first spelled, and no quarantine."""
    _write(tmp_path, "items.csv", "id,title,genre\ni1,A,Drama\ni2,B,drama\ni3,C,DRAMA \n")
    mapping = {"lowercase_ids": True, "files": [{"path": "items.csv", "role": "items", "id": "id", "title": "title",
                                                 "attributes": [{"column": "genre"}]}]}
    res = read_tabular(tmp_path, mapping)
    _reconciles(res)
    assert not res.quarantine
    assert res.records.entities == [{"id": "genre:drama", "type": "genre", "name": "Drama"}]
    assert [r["item"] for r in res.records.item_entities] == ["i1", "i2", "i3"]
    mapping["lowercase_ids"] = False  # ids that keep their case: three entities
    assert len(read_tabular(tmp_path, mapping).records.entities) == 3


def test_lone_surrogates_are_quarantined_and_written_to_the_quarantine_file(tmp_path):
    """A JSON \\ud800 escape without its pair decodes to a lone surrogate, which Neo4j cannot store
    nor UTF-8 encode: the row is quarantined with the reason, its raw row is written back as the
    escape (read back as it was), and a proper pair (an emoji) loads."""
    from kg.governance import write_quarantine

    lines = ['{"u": "A\\ud800", "i": "x", "t": "fine"}', '{"u": "B", "i": "y", "t": "bad \\udfff"}',
             '{"u": "C", "i": "z", "t": "ok \\ud83d\\ude00"}']
    _write(tmp_path, "ev.jsonl", "\n".join(lines) + "\n")
    res = read_tabular(tmp_path, {"files": [{"path": "ev.jsonl", "format": "jsonl", "role": "interactions",
                                             "user": "u", "item": "i", "title": "t", "create_nodes": True}]})
    _reconciles(res)
    assert [i["user"] for i in res.records.interactions] == ["B", "C"]  # B's event stands, without the title
    assert {i["id"]: i["title"] for i in res.records.items} == {"x": "fine", "y": "", "z": "ok \U0001f600"}
    reasons = {q["reason"].split(" is not")[0] for q in res.quarantine}
    assert reasons == {"user id", "title"} and all("lone surrogate" in q["reason"] for q in res.quarantine)
    out = write_quarantine(res, tmp_path / "q.jsonl")
    assert {json.loads(line)["raw"]["u"] for line in out.read_text(encoding="utf-8").splitlines()} == {"A\ud800", "B"}


def test_header_after_blank_lines_and_delimiter_only_rows(tmp_path):
    """With columns given, the header is the first non-blank line (not line 1); a line of delimiters
    only is a row: read, then quarantined, so the counts still reconcile."""
    _write(tmp_path, "events.tsv", "\n\nuser\titem\nu1\ti1\n\t\nu2\ti2\n")
    mapping = {"files": [{"path": "events.tsv", "role": "interactions", "delimiter": "\t", "header": True,
                          "columns": ["user", "item"], "user": "user", "item": "item", "create_nodes": True}]}
    res = read_tabular(tmp_path, mapping)
    _reconciles(res)
    assert [(i["user"], i["item"]) for i in res.records.interactions] == [("u1", "i1"), ("u2", "i2")]
    assert res.report["events.tsv"]["read"] == 3 and list(_reasons(res)) == [5]


def test_lowercase_ids_reach_flag_entities(tmp_path):
    _write(tmp_path, "items.csv", "id,title,Action,Drama\nI1,Heat,1,0\nI2,Up,0,1\n")
    mapping = {"lowercase_ids": True, "files": [{
        "path": "items.csv", "role": "items", "id": "id", "title": "title",
        "flags": {"columns": ["Action", "Drama"], "relation": "genre"}}]}
    res = read_tabular(tmp_path, mapping)
    _reconciles(res)
    assert not res.quarantine
    assert {e["id"] for e in res.records.entities} == {"genre:action", "genre:drama"}
    assert {(r["item"], r["entity"]) for r in res.records.item_entities} == {("i1", "genre:action"),
                                                                           ("i2", "genre:drama")}


def test_references_to_nodes_already_in_the_graph_are_accepted():
    """A file of new events for known users and items loads on its own: the ``known`` lookup says
    which ids the graph holds; those are neither quarantined nor re-created as placeholders."""
    in_graph = {"users": {"u1"}, "items": {"i1"}, "entities": {"genre:drama"}, "queries": set()}
    asked = []

    def known(kind, ids):
        asked.append((kind, ids))
        return in_graph[kind] & set(ids)

    gov = Governor(known=known)
    gov.add_interaction("delta.csv", 1, "r", user="u1", item="i1", ts=5)
    gov.add_interaction("delta.csv", 2, "r", user="u9", item="i1", ts=6)
    gov.add_item_entity("delta.csv", 3, "r", item="i1", entity="genre:drama", relation="genre")
    gov.add_triple("kg.tsv", 1, "r", head="genre:drama", relation="subgenre_of", tail="kg:x")
    res = gov.finish()
    _reconciles(res)
    assert [(i["user"], i["item"]) for i in res.records.interactions] == [("u1", "i1")]
    assert _reasons(res) == {2: "unknown user 'u9'"}
    assert res.records.users == [] and res.records.items == []  # nothing re-created
    assert [e["id"] for e in res.records.entities] == ["kg:x"]  # only the entity the graph lacks
    assert res.in_graph == {"users": 1, "items": 1, "entities": 1}
    assert sorted(asked) == [("entities", ["genre:drama", "kg:x"]), ("items", ["i1"]), ("users", ["u1", "u9"])]


def test_a_header_that_is_not_the_mapped_columns_is_an_error(tmp_path):
    """`columns` with `header = true` renames the header one for one: a header naming the same columns in
    another order (users and items swapped), or a file without a header, is refused rather than misread."""
    mapping = {"files": [{"path": "e.csv", "role": "interactions", "user": "user", "item": "item",
                          "timestamp": "ts", "columns": ["user", "item", "ts"], "create_nodes": True}]}
    _write(tmp_path, "e.csv", "Alice,I1,100\nBob,I1,200\n")  # header left unsaid: Alice's row would go as one
    with pytest.raises(MappingError, match="say whether the first line is a header"):
        read_tabular(tmp_path, mapping)
    mapping["files"][0]["header"] = True
    _write(tmp_path, "e.csv", "item,user,ts\nI1,Alice,100\nI1,Bob,200\n")
    with pytest.raises(MappingError, match="another order"):
        read_tabular(tmp_path, mapping)
    _write(tmp_path, "e.csv", "Alice,I1\nBob,I1\n")  # no header line, and two fields: not this layout
    with pytest.raises(MappingError, match="header = false"):
        read_tabular(tmp_path, mapping)
    _write(tmp_path, "e.csv", "item,user,rating\nI1,Alice,100\n")  # two of three swapped, one renamed
    with pytest.raises(MappingError, match="another order"):
        read_tabular(tmp_path, mapping)
    _write(tmp_path, "e.csv", "u,i,t\nAlice,I1,100\n")  # renamed one for one: fine
    assert [(r["user"], r["item"]) for r in read_tabular(tmp_path, mapping).records.interactions] == [("Alice", "I1")]
    _write(tmp_path, "e.csv", "user,item,user\nA,I1,B\n")
    with pytest.raises(MappingError, match="twice"):
        read_tabular(tmp_path, {"files": [{"path": "e.csv", "role": "interactions", "user": "user", "item": "item"}]})


def test_lowercase_ids_reach_friends_and_queries(tmp_path):
    _write(tmp_path, "users.csv", "id\nAlice\nBob\n")
    _write(tmp_path, "items.csv", "id,title\nI1,One\n")
    _write(tmp_path, "friends.csv", "user,friend\nAlice,Bob\n")
    _write(tmp_path, "queries.csv", "id,text\nQ1,one\n")
    _write(tmp_path, "searched.csv", "user,query\nALICE,q1\n")
    _write(tmp_path, "relevant.csv", "query,item\nQ1,I1\n")
    mapping = {"lowercase_ids": True, "files": [
        {"path": "users.csv", "role": "users", "id": "id"},
        {"path": "items.csv", "role": "items", "id": "id", "title": "title"},
        {"path": "friends.csv", "role": "friends", "user": "user", "friend": "friend"},
        {"path": "queries.csv", "role": "queries", "id": "id", "text": "text"},
        {"path": "searched.csv", "role": "user_queries", "user": "user", "query": "query"},
        {"path": "relevant.csv", "role": "query_items", "query": "query", "item": "item"}]}
    res = read_tabular(tmp_path, mapping)
    _reconciles(res)
    assert not res.quarantine
    assert [(f["user"], f["friend"]) for f in res.records.friends] == [("alice", "bob")]
    assert [q["id"] for q in res.records.queries] == ["q1"]
    assert [(r["user"], r["query"]) for r in res.records.user_queries] == [("alice", "q1")]
    assert [(r["query"], r["item"]) for r in res.records.query_items] == [("q1", "i1")]


def test_flag_columns_must_pair_with_names_and_hold_on_or_off(tmp_path):
    _write(tmp_path, "items.csv", "id,g0,g1\nI1,1,0\nI2,1.0,\nI3,0,yes\n")
    flags = {"columns": ["g0", "g1"], "names": ["action", "drama"], "relation": "genre"}
    spec = {"path": "items.csv", "role": "items", "id": "id", "flags": flags}
    res = read_tabular(tmp_path, {"files": [spec]})
    _reconciles(res)
    assert [(r["item"], r["entity"]) for r in res.records.item_entities] == [("I1", "genre:action")]
    assert sorted(q["reason"] for q in res.quarantine) == [
        "flag column 'g0' is '1.0', neither '1' nor '0'", "flag column 'g1' is 'yes', neither '1' nor '0'"]
    assert {i["id"] for i in res.records.items} == {"I1", "I2", "I3"}  # the items themselves load
    with pytest.raises(MappingError, match="2 columns but 1 names"):
        read_tabular(tmp_path, {"files": [{**spec, "flags": {**flags, "names": ["action"]}}]})


@pytest.mark.parametrize("spec, message", [
    ("x", "must be a table"),
    ({"role": "items", "id": "id", "flags": {"names": ["a"]}}, "columns = \\[...\\]"),
    ({"role": "items", "id": "id", "attributes": [{"relation": "brand"}]}, "needs a column"),
    ({"role": "items", "id": "id", "delimiter": "::", "quoting": "minimal"}, "one character"),
    # a string is truthy: "false" read the first data row as the header, in no count
    ({"role": "items", "id": "id", "columns": ["id"], "header": "false"}, "header must be true or false"),
    ({"role": "interactions", "user": "u", "item": "i", "create_users": "no"}, "create_users must be true or false"),
    ({"role": "items", "id": "id", "delimiter": "\t", "quoting": "None"}, "quoting must be one of"),
    ({"role": "items", "id": "id", "attributes": [{"column": "tags", "separator": ""}]}, "non-empty string"),
    # two columns under one property name kept only one value a row
    ({"role": "items", "id": "id", "props": ["a", "b"], "prop_names": {"a": "p", "b": "p"}},
     "columns 'a' and 'b' are both stored as property 'p'"),
    ({"role": "items", "id": "id", "props": ["a", "p"], "prop_names": {"a": "p"}}, "both stored as property 'p'"),
    ({"role": "items", "id": "id", "props": ["a"], "prop_names": {"b": "c"}}, "renaming columns of props"),
])
def test_malformed_mappings_say_what_is_wrong(spec, message):
    with pytest.raises(MappingError, match=message):
        read_tabular(".", {"files": [spec]})


@pytest.mark.parametrize("key, value, message", [
    ("path", 5, "path must be a string, not 5"),
    ("role", ["users"], "role must be a string, not ['users']"),
    ("props", "age", "props must be a list of columns or a table {column = type}, not 'age'"),
    ("entity_prefix", 1, "entity_prefix must be a string, not 1"),
    ("columns", 5, "columns must be a list of strings, not 5"),
    ("columns", "id", "columns must be a list of strings, not 'id'"),  # list("id"): columns i and d
    ("title_value", ["a"], "title_value must be a string, not ['a']"),  # loaded as the text "['a']"
    ("id", 3, "id must be a string, not 3"),
    ("attributes", [{"column": "g", "prefix": 5}], "attributes prefix must be a string, not 5"),
    ("flags", {"columns": ["g"], "names": [1]}, "flags names must be a list of strings, not [1]"),
    ("flags", {"columns": [1]}, "flags columns must be a list of strings, not [1]"),
])
def test_mapping_values_of_the_wrong_type_are_mapping_errors(key, value, message):
    """TOML takes any type anywhere: these crashed the reader with a TypeError or AttributeError
    (the CLI showed a traceback), or loaded a list's repr as a title; each names the entry, the key,
    the type expected and the value given."""
    spec = {"path": "items.csv", "role": "items", "id": "id", "header": True, key: value}
    with pytest.raises(MappingError) as e:
        read_tabular(".", {"files": [spec]})
    assert str(e.value) == f"files[0]: {message}"


@pytest.mark.parametrize("spec, message", [
    ({"role": "interactions", "user": "u", "item": "i", "kind_value": "a click"},
     "files\\[0\\] \\(interactions\\): kind_value: invalid interaction kind name 'a click'"),
    ({"role": "interactions", "user": "u", "item": "i", "kind_value": 5}, "kind_value: interaction kind must be a string"),
    ({"role": "entities", "id": "id", "type_value": "Music Genre"}, "type_value: invalid entity type name"),
    ({"role": "triples", "head": "h", "tail": "t", "relation_value": "film genre"}, "relation_value: invalid relation"),
    ({"role": "items", "id": "id", "attributes": [{"column": "main genre"}]},
     "attributes relation \\(the column's name\\): invalid relation name 'main genre'"),
    ({"role": "items", "id": "id", "attributes": [{"column": "g", "relation": "genre", "entity_type": "a b"}]},
     "attributes entity_type: invalid entity type name 'a b'"),
    ({"role": "users", "id": "id", "flags": {"columns": ["g"], "relation": "is in"}}, "flags relation: invalid"),
])
def test_invalid_names_in_the_mapping_are_mapping_errors(tmp_path, spec, message):
    """A name the mapping gives (a constant, or an attribute's column) that no row could load under
    quarantined every row of the file, one reason each, and the load went on with none of them."""
    _write(tmp_path, "f.csv", "u,i,id,h,t,g,main genre\nu1,i1,x,h1,t1,1,rock\n")
    with pytest.raises(MappingError, match=message):
        read_tabular(tmp_path / "f.csv", {"files": [{**spec, "path": "f.csv"}]})
    ok = {k: v for k, v in spec.items() if k not in ("kind_value", "type_value", "relation_value")}
    if spec["role"] == "interactions":
        read_tabular(tmp_path / "f.csv", {"files": [{**ok, "kind_value": "click", "path": "f.csv"}]})
        # beside a column the constant fills its blank cells (since session 40), so it is checked too
        with pytest.raises(MappingError, match=message):
            read_tabular(tmp_path / "f.csv", {"files": [{**spec, "kind": "id", "path": "f.csv"}]})


def test_one_attributes_table_reads_as_a_list_of_one(tmp_path):
    """load_mapping took ``attributes = {column = ...}`` and the reader then failed on it (TypeError)."""
    _write(tmp_path, "at.csv", "id,g\nu1,M\n")
    res = read_tabular(tmp_path / "at.csv", {"files": [{"role": "users", "id": "id",
                                                        "attributes": {"column": "g", "relation": "gender"}}]})
    _reconciles(res)
    assert res.records.user_entities == [{"user": "u1", "entity": "gender:M", "relation": "gender", "stated": True}]


def test_flags_and_constant_titles_on_interactions_describe_the_items(tmp_path):
    """Only title/description columns and attributes made item rows: flags made their entities but
    linked no item, and title_value / description_value were dropped."""
    _write(tmp_path, "b.csv", "user,item,g1,g2\nu1,i1,1,0\nu2,i2,0,1\n")
    spec = {"role": "interactions", "user": "user", "item": "item", "create_nodes": True}
    res = read_tabular(tmp_path / "b.csv", {"files": [{**spec, "flags": {"columns": ["g1", "g2"], "names": ["A", "B"]}}]})
    _reconciles(res)
    assert sorted((r["item"], r["entity"]) for r in res.records.item_entities) == [("i1", "genre:A"), ("i2", "genre:B")]
    res = read_tabular(tmp_path / "b.csv", {"files": [{**spec, "title_value": "T", "description_value": "D"}]})
    _reconciles(res)
    assert sorted((i["id"], i["title"], i["description"]) for i in res.records.items) == [
        ("i1", "T", "D"), ("i2", "T", "D")]


def test_lowercase_ids_must_be_a_boolean():
    with pytest.raises(MappingError, match="lowercase_ids must be true or false, not 'false'"):
        read_tabular(".", {"lowercase_ids": "false", "files": [{"role": "items", "id": "id"}]})


def test_one_entity_id_with_two_types_is_quarantined(tmp_path):
    """brands.csv and cats.csv both numbering from 1 would make brand 1 and category 1 one node."""
    _write(tmp_path, "brands.csv", "id,name\n1,Acme\n")
    _write(tmp_path, "cats.csv", "id,name\n1,Books\n2,Toys\n")
    mapping = {"files": [{"path": "brands.csv", "role": "entities", "id": "id", "name": "name", "type_value": "brand"},
                         {"path": "cats.csv", "role": "entities", "id": "id", "name": "name", "type_value": "category"}]}
    res = read_tabular(tmp_path, mapping)
    _reconciles(res)
    assert [(e["id"], e["type"]) for e in res.records.entities] == [("1", "brand"), ("2", "category")]
    assert len(res.quarantine) == 1 and "already a 'brand' (from brands.csv)" in res.quarantine[0]["reason"]
    with_prefix = [{**f, "entity_prefix": f"{f['type_value']}:"} for f in mapping["files"]]
    assert not read_tabular(tmp_path, {"files": with_prefix}).quarantine


def test_a_rejected_user_row_loads_none_of_its_attributes(tmp_path):
    _write(tmp_path, "users.csv", "id,age,occupation\nU1,99999999999999999999,engineer\n,30,writer\nU2,31,artist\n")
    mapping = {"files": [{"path": "users.csv", "role": "users", "id": "id", "props": {"age": "int"},
                          "attributes": [{"column": "occupation", "relation": "occupation"}]}]}
    res = read_tabular(tmp_path, mapping, IngestConfig(unknown_reference="create"))
    _reconciles(res)
    assert len(res.quarantine) == 2
    assert [u["id"] for u in res.records.users] == ["U2"]
    assert [(r["user"], r["entity"]) for r in res.records.user_entities] == [("U2", "occupation:artist")]
    assert [e["id"] for e in res.records.entities] == ["occupation:artist"]


def test_multi_character_delimiters_and_unmapped_doubled_columns_still_read(tmp_path):
    """MovieLens 1M's `::` files (no quoting) and headers with blank or repeated unmapped columns."""
    _write(tmp_path, "items.dat", "1::Toy Story::x\n2::Heat::y\n")
    spec = {"path": "items.dat", "role": "items", "id": "id", "title": "title", "delimiter": "::", "header": False,
            "columns": ["id", "title", "other"]}
    assert [i["title"] for i in read_tabular(tmp_path, {"files": [spec]}).records.items] == ["Toy Story", "Heat"]
    _write(tmp_path, "items.csv", "id,title,note,note,,\n1,Up,a,b,,\n")
    res = read_tabular(tmp_path, {"files": [{"path": "items.csv", "role": "items", "id": "id", "title": "title"}]})
    assert [i["title"] for i in res.records.items] == ["Up"]


def test_property_names_with_a_trailing_newline_and_weights_beyond_float32_are_refused():
    with pytest.raises(MappingError, match="not an identifier"):
        read_tabular(".", {"files": [{"role": "users", "id": "id", "props": ["age"], "prop_names": {"age": "age\n"}}]})
    with pytest.raises(GovernanceError, match="float32"):
        parse_number("1e39")
    assert parse_number("3e38") == 3e38


def test_a_repeat_of_a_quarantined_event_is_quarantined_with_it():
    """Deduplicated against a row that is later rejected (an unknown item), the repeat is not a
    repeat of anything loaded: it goes to quarantine too, and the counts still reconcile."""
    gov = Governor(IngestConfig(unknown_reference="quarantine"))
    gov.add_user("users.csv", 1, "r", id="u1")
    gov.add_interaction("events.csv", 2, "r2", user="u1", item="nope", ts=1)
    gov.add_interaction("events.csv", 3, "r3", user="u1", item="nope", ts=1)
    res = gov.finish()
    _reconciles(res)
    assert sorted(_reasons(res)) == [2, 3] and "a repeat of events.csv:2" in _reasons(res)[3]
    assert res.report["events.csv"]["deduplicated"] == 0 and res.report["events.csv"]["quarantined"] == 2


def test_an_event_log_creates_no_node_that_only_quarantined_events_name(tmp_path):
    """u2's only event names an unknown item: it is quarantined, and u2 was still created (and
    counted in ``created``). A node an event declares exists only while an event naming it loads."""
    _write(tmp_path, "items.csv", "id\ni1\n")
    _write(tmp_path, "ev.csv", "u,i\nu1,i1\nu2,BAD\nu3,BAD\nu3,i1\n")
    res = read_tabular(tmp_path, {"files": [
        {"path": "items.csv", "role": "items", "id": "id"},
        {"path": "ev.csv", "role": "interactions", "user": "u", "item": "i", "create_users": True}]})
    _reconciles(res)
    assert [u["id"] for u in res.records.users] == ["u1", "u3"] and res.created == {"users": 2}
    assert [(q["line"], q["reason"]) for q in res.quarantine] == [(3, "unknown item 'BAD'"), (4, "unknown item 'BAD'")]


def test_dropping_an_event_drops_what_it_declared_and_what_needed_that():
    """Events declare nodes for each other: an event whose end only a quarantined event declared is
    quarantined in turn (it was loaded against a node created from nothing), while events that
    declare each other's ends all load."""
    gov = Governor(IngestConfig(unknown_reference="quarantine"))
    gov.add_user("u.csv", 1, "r", id="u0")
    gov.add_interaction("a.csv", 1, "r", user="u1", item="ghost", creates=["users"])  # unknown item: u1 unmade
    gov.add_interaction("b.csv", 1, "r", user="u1", item="i7", creates=["items"])  # needs u1: i7 unmade
    gov.add_interaction("c.csv", 1, "r", user="u0", item="i7")  # needs i7
    gov.add_friend("f.csv", 1, "r", user="u0", friend="u1")  # needs u1
    for user, item, src in (("u2", "i1", "a.csv"), ("u3", "i1", "b.csv"), ("u3", "i2", "a.csv"), ("u2", "i2", "b.csv")):
        gov.add_interaction(src, 2, "r", user=user, item=item, creates=["users" if src == "a.csv" else "items"])
    res = gov.finish()
    _reconciles(res)
    assert sorted((q["source"], q["reason"]) for q in res.quarantine) == [
        ("a.csv", "unknown item 'ghost'"), ("b.csv", "unknown user 'u1'"), ("c.csv", "unknown item 'i7'"),
        ("f.csv", "unknown user 'u1'")]
    assert sorted((r["user"], r["item"]) for r in res.records.interactions) == [
        ("u2", "i1"), ("u2", "i2"), ("u3", "i1"), ("u3", "i2")]
    assert res.created == {"users": 2, "items": 2} and [u["id"] for u in res.records.users] == ["u0", "u2", "u3"]


def test_a_repeat_from_a_file_that_creates_users_declares_them_for_the_event():
    """The same event in an export without create_users and in a log with it: the first row holds
    the event, and the repeat's declaration counts for it (it was dropped, and the event quarantined)."""
    gov = Governor(IngestConfig(unknown_reference="quarantine"))
    gov.add_item("items.csv", 1, "r", id="i1")
    gov.add_interaction("export.csv", 1, "r", user="u9", item="i1", ts=5)
    gov.add_interaction("log.csv", 1, "r", user="u9", item="i1", ts=5, creates=["users"])
    res = gov.finish()
    _reconciles(res)
    assert res.quarantine == [] and res.created == {"users": 1}
    assert [(r["user"], r["item"]) for r in res.records.interactions] == [("u9", "i1")]


def test_a_row_conflicting_with_a_quarantined_event_does_not_say_it_was_kept(tmp_path):
    """The conflicting row's reason said the first row was kept, and that row was quarantined."""
    _write(tmp_path, "users.csv", "id\nu1\n")
    _write(tmp_path, "ev.csv", "u,i,r\nu9,i1,5\nu9,i1,4\nu1,i1,5\nu1,i1,4\n")
    res = read_tabular(tmp_path, {"files": [
        {"path": "users.csv", "role": "users", "id": "id"},
        {"path": "ev.csv", "role": "interactions", "user": "u", "item": "i", "weight": "r", "create_items": True}]})
    _reconciles(res)
    assert _reasons(res)[3] == ("the same interaction is already loaded with weight 5.0 (not 4.0) (ev.csv:2); "
                                "that row is quarantined too (unknown user 'u9')")
    assert _reasons(res)[5].endswith("(ev.csv:4); kept that row")
    assert [(r["user"], r["item"], r["weight"]) for r in res.records.interactions] == [("u1", "i1", 5.0)]


def test_declared_nodes_the_graph_holds_are_not_reported_created():
    gov = Governor(known=lambda kind, ids: {"users": {"u1"}, "items": {"i1"}}.get(kind, set()) & set(ids))
    gov.add_interaction("delta.csv", 1, "r", user="u1", item="i1", ts=5)
    gov.add_interaction("delta.csv", 2, "r", user="u2", item="i1", ts=6)
    for kind, node in (("users", "u1"), ("items", "i1"), ("users", "u2")):
        gov.declare(kind, node)
    res = gov.finish()
    _reconciles(res)
    assert res.created == {"users": 1} and [u["id"] for u in res.records.users] == ["u2"]
    assert res.records.items == [] and res.in_graph == {"users": 1, "items": 1}


def test_a_blank_or_out_of_range_rating_is_quarantined_and_blank_ids_make_no_entity(tmp_path):
    _write(tmp_path, "r.tsv", "u1\ti1\t4\nu1\ti2\t\nu1\ti3\t99\nu1\ti4\t0.5\n")
    mapping = {"files": [{"path": "r.tsv", "role": "interactions", "delimiter": "\t", "header": False,
                          "columns": ["u", "i", "r"], "user": "u", "item": "i", "weight": "r",
                          "weight_range": [1, 5], "create_nodes": True}]}
    res = read_tabular(tmp_path, mapping)
    _reconciles(res)
    assert [i["item"] for i in res.records.interactions] == ["i1"]
    reasons = _reasons(res)
    assert reasons[2] == "missing weight" and "outside 1..5" in reasons[3] and "outside 1..5" in reasons[4]
    with pytest.raises(MappingError, match="weight_range"):
        read_tabular(tmp_path, {"files": [{**mapping["files"][0], "weight_range": [5, 1]}]})
    # a blank head or tail is a missing id, never the bare prefix "kg:"
    _write(tmp_path, "kg.tsv", "\tgenre\t7\n1\tgenre\t\u200b\n1\tgenre\t7\n")  # a zero-width space alone too
    res = read_tabular(tmp_path, {"files": [{"path": "kg.tsv", "role": "triples", "delimiter": "\t",
                                             "header": False, "columns": ["h", "r", "t"], "head": "h",
                                             "relation": "r", "tail": "t", "entity_prefix": "kg:"}]})
    _reconciles(res)
    assert sorted(_reasons(res)) == [1, 2] and [(t["head"], t["tail"]) for t in res.records.triples] == [("kg:1", "kg:7")]
    assert "kg:" not in {e["id"] for e in res.records.entities}


def test_a_blank_mapped_relevance_is_quarantined_like_a_blank_weight(tmp_path):
    """A blank relevance cell loaded as 1.0, the highest relevance there is; unmapped, it is still 1."""
    _write(tmp_path, "d.csv", "q,item,rel\nq1,i1,\nq1,i2,0.5\n")
    spec, cfg = {"role": "query_items", "query": "q", "item": "item"}, IngestConfig(unknown_reference="create")
    res = read_tabular(tmp_path / "d.csv", {"files": [{**spec, "relevance": "rel"}]}, cfg)
    _reconciles(res)
    assert [(r["item"], r["relevance"]) for r in res.records.query_items] == [("i2", 0.5)]
    assert [(q["line"], q["reason"]) for q in res.quarantine] == [(2, "missing relevance")]
    res = read_tabular(tmp_path / "d.csv", {"files": [spec]}, cfg)
    assert [r["relevance"] for r in res.records.query_items] == [1.0, 1.0]


def test_two_files_of_one_name_in_two_folders_are_two_sources(tmp_path):
    """Both were reported (and quarantined) as ``ev.csv``: the label is the mapping's path as written."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    _write(tmp_path, "x/ev.csv", "u,i\nu1,i1\nu1,\n")
    _write(tmp_path, "y/ev.csv", "u,i\nu2,i2\n")
    spec = {"role": "interactions", "user": "u", "item": "i", "create_nodes": True}
    res = read_tabular(tmp_path, {"files": [{**spec, "path": "x/ev.csv"}, {**spec, "path": "./y/ev.csv"}]})
    _reconciles(res)
    assert res.report == {"x/ev.csv": {"read": 2, "loaded": 1, "quarantined": 1, "deduplicated": 0},
                          "y/ev.csv": {"read": 1, "loaded": 1, "quarantined": 0, "deduplicated": 0}}
    assert [(q["source"], q["line"]) for q in res.quarantine] == [("x/ev.csv", 3)]


def test_an_empty_or_header_only_file_is_in_the_reconciliation_with_a_warning(tmp_path, caplog):
    """A 0-byte or header-only file left no trace: no report entry, no warning, so a failed upstream
    export looked like a file that was never mapped."""
    _write(tmp_path, "ev.csv", "user,item\nu1,i1\n")
    _write(tmp_path, "empty.csv", b"")
    _write(tmp_path, "header.csv", "user,item\n\n")
    spec = {"role": "interactions", "user": "user", "item": "item", "header": True, "create_nodes": True}
    with caplog.at_level("WARNING", logger="kg.governance"):
        res = read_tabular(tmp_path, {"files": [{**spec, "path": p} for p in ("ev.csv", "empty.csv", "header.csv")]})
    _reconciles(res)
    none = {"read": 0, "loaded": 0, "quarantined": 0, "deduplicated": 0}
    assert res.report == {"ev.csv": {**none, "read": 1, "loaded": 1}, "empty.csv": none, "header.csv": none}
    assert json.loads(reconciliation_json(res))["files"]["empty.csv"] == none
    assert [r.getMessage() for r in caplog.records] == [
        f"{name}: no data rows (an empty file, or a header alone): nothing read from it"
        for name in ("empty.csv", "header.csv")]


def test_a_utf16_file_is_refused_with_what_to_do(tmp_path):
    _write(tmp_path, "u.csv", "user,item\nu1,i1\n".encode("utf-16"))
    with pytest.raises(MappingError, match="iconv"):
        read_tabular(tmp_path, {"files": [{"path": "u.csv", "role": "interactions", "user": "user", "item": "item",
                                           "encoding": "utf-16"}]})


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_read_as_utf8_says_it_looks_utf16(tmp_path, encoding):
    """Read as UTF-8 a UTF-16 file gave "column 'user' ... not in the file's columns ['\\ufffd\\ufffdu\\x00', ...]"
    (CSV) or every line quarantined as bad bytes (JSONL)."""
    data = "user,item\nu1,i1\n".encode(encoding)
    data = data if encoding == "utf-16" else ("\ufeff" + "user,item\nu1,i1\n").encode(encoding)
    _write(tmp_path, "u.csv", data)
    for fmt in ("csv", "jsonl"):
        with pytest.raises(MappingError, match="u.csv: starts with a UTF-16 byte-order mark .* looks UTF-16.*iconv"):
            read_tabular(tmp_path, {"files": [{"path": "u.csv", "role": "interactions", "user": "user",
                                               "item": "item", "format": fmt}]})
    with pytest.raises(MappingError, match="looks UTF-16"):
        read_recbole(_write(tmp_path, "toy.inter", "user_id:token\titem_id:token\n1\t2\n".encode("utf-16")))


def test_utf8_sig_is_read_as_the_utf8_it_is(tmp_path):
    """utf-8-sig encodes a newline with a BOM in front: it was refused as not ASCII-compatible."""
    _write(tmp_path, "a.csv", b"\xef\xbb\xbfuser,item\nu1,caf\xc3\xa9\n")
    res = read_tabular(tmp_path / "a.csv", {"files": [{"role": "interactions", "user": "user", "item": "item",
                                                       "encoding": "utf-8-sig", "create_nodes": True}]})
    _reconciles(res)
    assert [(r["user"], r["item"]) for r in res.records.interactions] == [("u1", "café")]


def test_eight_digit_strings_are_dates_not_seconds_of_1970():
    """``20201231`` in a CSV is the last day of 2020 (ISO 8601 basic form), midnight UTC."""
    assert parse_timestamp("20201231") == parse_timestamp("2020-12-31") == 1_609_372_800
    assert parse_timestamp(" 19991231 ") == parse_timestamp("1999-12-31")
    assert parse_timestamp("+20201231") == 20_201_231  # a sign keeps it seconds
    assert parse_timestamp(20201231) == 20_201_231  # and so does a number
    assert parse_timestamp("881250949") == 881250949  # nine digits and more: seconds
    with pytest.raises(GovernanceError, match="YYYYMMDD"):
        parse_timestamp("20201345")
    with pytest.raises(GovernanceError, match="placeholder"):  # past the year 5138, as "9999-12-31" is
        parse_timestamp("99991231")


def test_negative_fractional_timestamps_round_down():
    assert parse_timestamp("-0.5") == -1 and parse_timestamp(-1.5) == -2 and parse_timestamp("1.9") == 1
    # ISO times too: the last half second of 1969 was 0, an undated event
    assert parse_timestamp("1969-12-31T23:59:59.5Z") == -1 and parse_timestamp("1970-01-01T00:00:01.9Z") == 1
    assert parse_timestamp("1960-01-01T00:00:00.5Z") == parse_timestamp(-315619199.5) == -315619200
    assert parse_timestamp("4000-01-01T00:00:00.999999Z") == parse_timestamp("4000-01-01") == 64060588800
    assert parse_timestamp("881250949") == 881250949


def test_the_header_line_again_mid_file_is_quarantined_not_loaded_as_a_row(tmp_path):
    """Two exports joined (cat a.csv b.csv): the second header loaded as an item with id "id"."""
    _write(tmp_path, "items.csv", '\ufeffid,title\n1,One\nid, title\n2,Two\n"id","title"\n\ufeffid,title\n')  # BOMs: Excel's
    res = read_tabular(tmp_path, {"files": [{"path": "items.csv", "role": "items", "id": "id", "title": "title"}]})
    _reconciles(res)
    assert [i["id"] for i in res.records.items] == ["1", "2"]
    assert _reasons(res) == {n: "the header line again (files joined?), not a row" for n in (3, 5, 6)}
    _write(tmp_path, "items.csv", 'id,title\nid,title\n')  # headerless, "id,title" is a row like any other
    res = read_tabular(tmp_path, {"files": [{"path": "items.csv", "role": "items", "id": "id", "title": "title",
                                             "header": False, "columns": ["id", "title"]}]})
    assert [i["title"] for i in res.records.items] == ["title"]


def test_quoted_fields_may_hold_line_breaks_and_long_text(tmp_path):
    """A quoted CSV field may span lines (one row, numbered by its first line) and be longer than
    the csv module's default 128 KiB (truncated to max_text_chars, as unquoted text is); a quote
    never closed quarantines its own line only, and reading goes on."""
    long = "y" * 200_000
    _write(tmp_path, "items.csv", f'id,title,year\n1,"two\nlines, one title",2000\n2,"{long}",2001\n'
                                  f'3,"never closed,2002\n4,plain,2003\n')
    spec = {"path": "items.csv", "role": "items", "id": "id", "title": "title", "props": {"year": "int"}}
    res = read_tabular(tmp_path, {"files": [spec]}, IngestConfig(max_text_chars=1000))
    _reconciles(res)
    items = {i["id"]: i for i in res.records.items}
    assert items["1"]["title"] == "two lines, one title" and items["1"]["props"] == {"year": 2000}
    assert len(items["2"]["title"]) == 1000 and items["4"]["title"] == "plain"
    assert list(_reasons(res)) == [5] and "malformed CSV" in _reasons(res)[5]
    assert res.report["items.csv"] == {"read": 4, "loaded": 3, "quarantined": 1, "deduplicated": 0}
    # a literal inch mark before the quoted field: the record still ends where its quote closes
    _write(tmp_path, "tv.csv", 'id,size,title\n6,5" TV,"two\nlines ""quoted"""\n7,42",plain\n')
    spec = {"path": "tv.csv", "role": "items", "id": "id", "title": "title", "props": {"size": "str"}}
    tv = read_tabular(tmp_path, {"files": [spec]})
    assert [(i["id"], i["props"]["size"], i["title"]) for i in tv.records.items] == [
        ("6", '5" TV', 'two lines "quoted"'), ("7", '42"', "plain")]
    assert not tv.quarantine


def test_jsonl_values_are_held_to_the_declared_property_types(tmp_path):
    """A JSON number or boolean is stored as the mapping's type, as the same CSV cell would be;
    one that is not of that type is quarantined."""
    good = {"age": 24.0, "code": 7, "flag": True, "score": 3}
    rows = [{"item": "a", **good}, {"item": "b", **good, "age": 24.5}, {"item": "c", **good, "code": [1]},
            {"item": "d", **good, "flag": 1}]
    _write(tmp_path, "items.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    spec = {"path": "items.jsonl", "role": "items", "format": "jsonl", "id": "item",
            "props": {"age": "int", "code": "str", "flag": "bool", "score": "float"}}
    res = read_tabular(tmp_path, {"files": [spec]})
    _reconciles(res)
    assert [i["props"] for i in res.records.items] == [{"age": 24, "code": "7", "flag": True, "score": 3.0}]
    assert sorted(_reasons(res)) == [2, 3, 4] and "is not int" in _reasons(res)[2]


def test_jsonl_text_and_attribute_values_are_read_as_the_csv_cells_would_be(tmp_path):
    """``str()`` made entities ``genre:True`` and ``genre:{'a': 1}`` and the title "{'en': 'T'}": a
    number or boolean is now its CSV text (``genre:true``, as a CSV load gives), and an object, or an
    array where one value is expected, quarantines the row with its reason."""
    rows = [{"id": "i1", "title": 7, "genres": [True, 1.5, "x"], "g": True},
            {"id": "i2", "title": {"en": "T"}, "genres": "x", "g": False},
            {"id": "i3", "title": "ok", "genres": [False, {"a": 1}], "g": False},
            {"id": "i4", "title": "ok", "genres": [["y"]], "g": False},
            {"id": "i5", "title": ["T"], "genres": "x", "g": False}]
    _write(tmp_path, "items.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    spec = {"path": "items.jsonl", "role": "items", "format": "jsonl", "id": "id", "title": "title",
            "attributes": [{"column": "genres", "relation": "genre"}],
            "flags": {"columns": ["g"], "names": ["good"], "relation": "tag", "value": "true", "off_value": "false"}}
    res = read_tabular(tmp_path, {"files": [spec]})
    _reconciles(res)
    assert [(i["id"], i["title"]) for i in res.records.items] == [("i1", "7")]
    assert sorted(r["entity"] for r in res.records.item_entities) == ["genre:1.5", "genre:true", "genre:x", "tag:good"]
    assert _reasons(res) == {
        2: 'column \'title\' holds a JSON object, not text or a number: {"en": "T"}',
        3: 'column \'genres\' holds a JSON object in its array, not text or a number: {"a": 1}',
        4: 'column \'genres\' holds a JSON array in its array, not text or a number: ["y"]',
        5: 'column \'title\' holds a JSON array, not text or a number: ["T"]'}
    assert res.quarantine[0]["raw"] == rows[1]  # the row as read
    _write(tmp_path, "items.csv", "id,title,genres,g\ni1,7,true,true\n")  # the same data as CSV
    csv_res = read_tabular(tmp_path, {"files": [{**spec, "path": "items.csv", "format": "csv"}]})
    assert sorted(r["entity"] for r in csv_res.records.item_entities) == ["genre:true", "tag:good"]
    # rows built in Python reach the same rule in governance
    res = govern_records(GraphRecords(items=[{"id": "a", "title": {"en": "T"}}, {"id": "b", "title": "B"}]))
    assert [i["id"] for i in res.records.items] == ["b"] and _reasons(res) == {1: "title must be text, got dict"}


def test_a_jsonl_field_the_mapping_reads_given_twice_is_quarantined(tmp_path):
    """``{"u": "a", "i": "x", "i": "y"}`` loaded the event with item y: JSON keeps the last key
    without a word, and which one the writer meant is unknown. A doubled key the mapping does not
    read, at the top or inside a value, costs nothing."""
    lines = ['{"u": "a", "i": "x", "i": "y"}', '{"u": "b", "i": "x", "note": 1, "note": 2}',
             '{"u": "c", "i": "x", "meta": {"k": 1, "k": 2}}']
    _write(tmp_path, "e.jsonl", "\n".join(lines) + "\n")
    spec = {"path": "e.jsonl", "role": "interactions", "format": "jsonl", "user": "u", "item": "i", "create_nodes": True}
    res = read_tabular(tmp_path, {"files": [spec]})
    _reconciles(res)
    assert sorted(r["user"] for r in res.records.interactions) == ["b", "c"]
    assert _reasons(res) == {1: "field 'i' given twice in the JSON object"}


def test_a_jsonl_number_too_large_for_a_float_is_quarantined_and_the_rest_loads(tmp_path):
    """A 400-digit weight, timestamp or float property, and a 5,000-digit integer (past Python's
    parsing limit), each cost their own row only."""
    huge, huger = "9" * 400, "9" * 5000
    lines = ['{"u": "a", "i": "x", "w": 1, "t": 1, "s": 1}', f'{{"u": "a", "i": "y", "w": {huge}, "t": 1, "s": 1}}',
             f'{{"u": "a", "i": "z", "w": 1, "t": {huge}, "s": 1}}', f'{{"u": "b", "i": "x", "w": 1, "t": {huger}, "s": 1}}']
    _write(tmp_path, "e.jsonl", "\n".join(lines) + "\n")
    spec = {"path": "e.jsonl", "role": "interactions", "format": "jsonl", "user": "u", "item": "i", "weight": "w",
            "timestamp": "t", "create_nodes": True}
    res = read_tabular(tmp_path, {"files": [spec]})
    _reconciles(res)
    assert [(r["user"], r["item"]) for r in res.records.interactions] == [("a", "x")]
    reasons = _reasons(res)
    assert sorted(reasons) == [2, 3, 4] and "not a number" in reasons[2] and "64-bit" in reasons[3]
    assert reasons[4].startswith("invalid JSON")
    _write(tmp_path, "i.jsonl", f'{{"item": "a", "score": 1.5}}\n{{"item": "b", "score": {huge}}}\n')
    items = read_tabular(tmp_path, {"files": [{"path": "i.jsonl", "role": "items", "format": "jsonl", "id": "item",
                                               "props": {"score": "float"}}]})
    _reconciles(items)
    assert [i["id"] for i in items.records.items] == ["a"] and "beyond float range" in _reasons(items)[2]


def test_jsonl_entity_and_triple_ids_that_are_not_strings_or_integers_are_quarantined(tmp_path):
    """``1.0`` would be a second entity beside ``1``, and ``true`` or ``[1, 2]`` no id at all."""
    rows = [{"h": 1, "r": "rel", "t": 2}, {"h": 1, "r": "rel", "t": 1.0}, {"h": [1, 2], "r": "rel", "t": True}]
    _write(tmp_path, "kg.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    res = read_tabular(tmp_path, {"files": [{"path": "kg.jsonl", "role": "triples", "format": "jsonl", "head": "h",
                                             "relation": "r", "tail": "t"}]})
    _reconciles(res)
    assert [(t["head"], t["tail"]) for t in res.records.triples] == [("1", "2")]
    assert sorted(_reasons(res)) == [2, 3] and all("string or integer" in r for r in _reasons(res).values())


def test_a_file_whose_lines_end_in_cr_alone_is_refused_not_read_as_one_line(tmp_path):
    """Classic Mac line ends: the whole file was one row (quarantined as one, or a column error)."""
    for data in (b"user,item\ru1,i1\ru2,i2\r", b"user,item\ru1,i1\ru2,i2\r\n"):  # a final LF some tools add
        _write(tmp_path, "mac.csv", data)
        with pytest.raises(MappingError, match="mac.csv: its lines end in CR alone"):
            read_tabular(tmp_path / "mac.csv", {"files": [{"role": "interactions", "user": "user", "item": "item"}]})
    for data in (b"u1,i1\ru2,i2\r", b'"u1",i1\r"u2",i2\n'):  # headerless, quoted or not
        _write(tmp_path, "mac.csv", data)
        with pytest.raises(MappingError, match="mac.csv: its lines end in CR alone"):
            read_tabular(tmp_path / "mac.csv", {"files": [{"role": "interactions", "user": "user", "item": "item",
                                                           "header": False, "columns": ["user", "item"]}]})
    _write(tmp_path, "mac.jsonl", b'{"user": "u1", "item": "i1"}\r{"user": "u2", "item": "i2"}\r')
    with pytest.raises(MappingError, match="mac.jsonl: its lines end in CR alone"):
        read_tabular(tmp_path / "mac.jsonl", {"files": [{"role": "interactions", "format": "jsonl", "user": "user",
                                                         "item": "item"}]})
    # a CR inside a quoted field of the first line is data, as on any later line: the whole file was refused
    _write(tmp_path, "items.csv", b'2,"one\rtwo"\n1,plain\n')
    res = read_tabular(tmp_path / "items.csv", {"files": [{"role": "items", "id": "id", "title": "title",
                                                          "header": False, "columns": ["id", "title"]}]})
    assert [(i["id"], i["title"]) for i in res.records.items] == [("2", "one two"), ("1", "plain")]
    _write(tmp_path, "quoted_header.csv", b'id,"the\rtitle"\n1,plain\n')
    res = read_tabular(tmp_path / "quoted_header.csv", {"files": [{"role": "items", "id": "id",
                                                                   "title": "the\rtitle"}]})
    assert [(i["id"], i["title"]) for i in res.records.items] == [("1", "plain")]
    _write(tmp_path, "dos.csv", b"user,item\r\nu1,i1\r\nu2,i2")  # CRLF, no final line end: read as two rows
    res = read_tabular(tmp_path / "dos.csv", {"files": [{"role": "interactions", "user": "user", "item": "item",
                                                          "create_nodes": True}]})
    assert [(r["user"], r["item"]) for r in res.records.interactions] == [("u1", "i1"), ("u2", "i2")]


def test_lines_that_end_in_cr_alone_after_the_first_are_refused_not_merged(tmp_path):
    """Mixed line ends (LF, then CR alone): the CR-ended rows read as one, most of them counted
    nowhere, quoted or not. A CR inside a field (quoted, or stray in unquoted text) is data: the
    rows load as before."""
    from kg.sources import load_source

    mapping = {"files": [{"role": "items", "id": "id", "title": "title", "description": "genre"}]}
    run = [f"{n},t{n},y" for n in range(1, 500)]
    refused = {
        "plain.csv": "id,title,genre\n0,a,x\n" + "\r".join(run) + "\n",
        "quoted.csv": 'id,title,genre\n1,"Toy Story (1995)",Comedy\n2,"Jumanji (1995)",Adventure\r'
                      '3,"Heat (1995)",Action\r4,"Casino (1995)",Drama\n',
        # one piece that is no row (blank, spaces, a row of another width) does not let the run through
        "blank.csv": "id,title,genre\n0,a,x\n" + "\r\r".join(run[:3]) + "\r \r" + "\r".join(run[3:]) + "\r  \n",
        "odd_row.csv": "id,title,genre\n0,a,x\n" + "\r".join(run[:3] + ["250,Hello, World,y"] + run[3:]) + "\n",
        "bad_byte.csv": ("id,title,genre\n0,a,x\n" + "\r".join(run)).encode() + b"\rcaf\xe9,t,y\n",  # not UTF-8
    }
    for name, data in refused.items():
        _write(tmp_path, name, data)
        with pytest.raises(MappingError, match=f"{name}: line 3 holds rows that end in CR alone"):
            read_tabular(tmp_path / name, mapping)
    _write(tmp_path, "late_header.csv", "\nid,title,genre\r0,t0,y\r1,t1,y\n")  # the header on line 2
    with pytest.raises(MappingError, match="late_header.csv: line 2 holds rows"):
        read_tabular(tmp_path / "late_header.csv", mapping)
    _write(tmp_path, "kept.csv", 'id,title,genre\n0,"two\rlines",x\n1,"a ""q"" \r",y\n2,"multi\nline\r cell",z\n')
    res = read_tabular(tmp_path / "kept.csv", mapping)
    assert [i["title"] for i in res.records.items] == ["two lines", 'a "q"', "multi line cell"]
    _write(tmp_path, "stray.tsv", "id\ttitle\tgenre\n1\tToy Story\tA toy\r comes alive\n2\tJumanji\tboard\n")
    res = read_tabular(tmp_path / "stray.tsv", {"files": [{**mapping["files"][0], "delimiter": "\t"}]})
    assert [i["description"] for i in res.records.items] == ["A toy comes alive", "board"]
    _write(tmp_path, "events.jsonl", '{"id": "0", "title": "a", "genre": "x"}\n'
           '{"id": "1", "title": "b", "genre": "y"}\r{"id": "2", "title": "c", "genre": "z"}\n')
    with pytest.raises(MappingError, match="line 2 holds rows that end in CR alone"):
        read_tabular(tmp_path / "events.jsonl", {"files": [{**mapping["files"][0], "format": "jsonl"}]})
    _write(tmp_path, "crcr.jsonl", '{"id": "9", "title": "a", "genre": "x"}\n'
           '{"id": "1", "title": "b", "genre": "y"}\r\r{"id": "2", "title": "c", "genre": "z"}\n')
    with pytest.raises(MappingError, match="crcr.jsonl: line 2 holds rows"):  # a blank line between
        read_tabular(tmp_path / "crcr.jsonl", {"files": [{**mapping["files"][0], "format": "jsonl"}]})
    from kg.sources.tabular import iter_rows

    _write(tmp_path, "slice.csv", "id,title,genre\n0,a,x\n1,b,y\n2,c,z\r3,d,w\n")  # a slice reads no further
    assert [line for line, *_ in iter_rows(tmp_path / "slice.csv", mapping["files"][0], limit=2)] == [2, 3]
    _write(tmp_path, "bad_byte.jsonl", b'{"id": "9", "title": "a", "genre": "x"}\n'
           b'{"id": "0", "title": "caf\xe9", "genre": "x"}\r{"id": "1", "title": "b", "genre": "y"}\n')
    with pytest.raises(MappingError, match="bad_byte.jsonl: line 2 holds rows"):
        read_tabular(tmp_path / "bad_byte.jsonl", {"files": [{**mapping["files"][0], "format": "jsonl"}]})
    (tmp_path / "lightgcn").mkdir()
    _write(tmp_path / "lightgcn", "train.txt", "0 1 2\n1 2\r2 3\n")
    with pytest.raises(MappingError, match="train.txt: line 2 holds rows"):  # ids: a CR is never data there
        load_source("lightgcn", tmp_path / "lightgcn")
