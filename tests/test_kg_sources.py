"""Source readers on small hand-written files and on slices of the shared datasets."""
from __future__ import annotations

import pytest

from kg.governance import LoadResult
from kg.sources import FORMATS, load_source
from kg.sources.kgat import relation_name
from kg.sources.recbole import read_recbole
from kg.sources.tabular import MappingError
from kgrec.config import IngestConfig

from conftest import dataset_dir

CREATE = IngestConfig(unknown_reference="create")


def _ok(res: LoadResult) -> None:
    assert res.reconciles(), res.report
    assert res.totals()["quarantined"] == len(res.quarantine)


def _read(graph, text: str) -> list[dict]:
    """Ad-hoc read for assertions (test code only; library code runs files from cypher/)."""
    records, _, _ = graph.driver.execute_query(text, database_=graph.database)
    return [r.data() for r in records]


def _files(tmp_path, files: dict[str, str | bytes]):
    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return tmp_path


# ----------------------------------------------------------------------------- hand-written files


def test_recbole_atomic_files(tmp_path, caplog):
    (tmp_path / "toy").mkdir()
    d = _files(tmp_path / "toy", {
        "toy.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     "u1\ti1\t4.0\t881250949\nu1\ti2\t3.0\t881250950\nu2\ti1\tnan\t1\nu1\ti1\t4.0\t881250949\n",
        "toy.user": "user_id:token\tage:token\tgender:token\nu1\t24\tM\nu2\t30\tF\n",
        "toy.item": "item_id:token\tmovie_title:token_seq\tgenre:token_seq\tprice:float\tvec:float_seq\n"
                    "i1\tToy Story\tAnimation Comedy\t9.5\t0.1 0.2\ni2\tHeat\tCrime\t\t0.3 0.4\n",
        "toy.kg": "head_id:token\trelation_id:token\ttail_id:token\n"
                  "m.01\tfilm.film.genre\tm.02\nm.01\tbad relation\tm.03\n",
        "toy.link": "item_id:token\tentity_id:token\ni1\tm.01\ni9\tm.02\n",
    })
    with caplog.at_level("WARNING", logger="kg.sources.recbole"):
        res = load_source("recbole", d)
    assert "toy.item: ignoring field(s) ['vec']" in caplog.text  # said, not silently dropped
    _ok(res)
    c = res.records.counts()
    assert (c["users"], c["items"], c["interactions"], c["triples"], c["item_entities"]) == (2, 2, 2, 1, 4)
    items = {i["id"]: i for i in res.records.items}
    assert items["i1"]["title"] == "Toy Story" and items["i1"]["props"] == {"price": 9.5}
    assert {e["id"] for e in res.records.entities} >= {"genre:Animation", "genre:Comedy", "genre:Crime",
                                                       "kg:m.01", "kg:m.02"}
    assert {r["relation"] for r in res.records.item_entities} == {"genre", "same_as"}
    assert res.records.interactions[0] == {"user": "u1", "item": "i1", "kind": "rating", "weight": 4.0,
                                           "ts": 881250949, "split": ""}
    assert res.report["toy.inter"] == {"read": 4, "loaded": 2, "quarantined": 1, "deduplicated": 1}
    reasons = sorted(q["reason"] for q in res.quarantine)
    assert len(reasons) == 3 and reasons[0].startswith("invalid relation name")
    assert reasons[1] == "unknown item 'i9'" and reasons[2] == "weight is NaN"


def test_recbole_pre_split_benchmark_files_keep_their_split(tmp_path, caplog):
    header = "user_id:token\titem_id:token\trating:float\n"
    (tmp_path / "ml-toy").mkdir()
    d = _files(tmp_path / "ml-toy", {"ml-toy.train.inter": header + "u1\ti1\t4\nu1\ti2\t3\nu2\ti1\t5\n",
                                     "ml-toy.valid.inter": header + "u1\ti3\t2\n",
                                     "ml-toy.test.inter": header + "u2\ti3\t1\n",
                                     "ml-toy.inter": header + "u1\ti9\t1\n"})
    with caplog.at_level("WARNING", logger="kg.sources.recbole"):
        res = load_source("recbole", d)
    _ok(res)
    assert "reading the pre-split" in caplog.text
    assert sorted((r["user"], r["item"], r["split"]) for r in res.records.interactions) == [
        ("u1", "i1", "train"), ("u1", "i2", "train"), ("u1", "i3", "valid"), ("u2", "i1", "train"),
        ("u2", "i3", "test")]
    single = load_source("recbole", d / "ml-toy.test.inter")
    assert [r["split"] for r in single.records.interactions] == ["test"]


def test_recbole_negative_labels_are_quarantined_not_learned_as_positives(tmp_path):
    """RecBole's ``label`` 0 is negative feedback (a click-through log's non-clicks)."""
    _files(tmp_path, {"ctr.inter": "user_id:token\titem_id:token\tlabel:float\n"
                                   "u1\ti1\t1\nu1\ti2\t0\nu2\ti1\t1\n"})
    res = read_recbole(tmp_path / "ctr.inter")
    assert [(r["user"], r["item"], r["weight"]) for r in res.records.interactions] == [("u1", "i1", 1.0),
                                                                                    ("u2", "i1", 1.0)]
    assert [q["reason"] for q in res.quarantine] == ["weight 0 is below 1"]
    assert res.report["ctr.inter"] == {"read": 3, "loaded": 2, "quarantined": 1, "deduplicated": 0}


def test_recbole_bad_header(tmp_path):
    _files(tmp_path, {"x.inter": "user_id\titem_id:token\nu\ti\n"})
    with pytest.raises(MappingError, match="field:type"):
        read_recbole(tmp_path / "x.inter")
    _files(tmp_path, {"x.inter": "user:token\titem_id:token\nu\ti\n"})
    with pytest.raises(MappingError, match="user_id"):
        read_recbole(tmp_path / "x.inter")
    _files(tmp_path, {"x.inter": "user_id:token\titem_id:token\trating:float\trating:token\nu\ti\t5\tx\n"})
    with pytest.raises(MappingError, match="names field 'rating' twice"):
        read_recbole(tmp_path / "x.inter")


def test_recbole_header_is_the_first_line_that_is_not_blank(tmp_path):
    """The reader skips blank lines before the header: so does the header parser (it read the
    blank first line and failed with "header token '' is not field:type")."""
    _files(tmp_path, {"rb.inter": "\n  \r\nuser_id:token\titem_id:token\n1\t2\n"})
    res = read_recbole(tmp_path / "rb.inter")
    _ok(res)
    assert [(r["user"], r["item"]) for r in res.records.interactions] == [("1", "2")]
    _files(tmp_path, {"rb.inter": "\n\n"})
    with pytest.raises(MappingError, match="no header line"):
        read_recbole(tmp_path / "rb.inter")


def test_lightgcn_governed_keeps_split(tmp_path):
    _files(tmp_path, {"train.txt": "0 1 2 3\n1 2\n2\n", "test.txt": "0 4\n1 x\n"})
    res = load_source("lightgcn", tmp_path)
    _ok(res)
    assert [(r["user"], r["item"], r["split"]) for r in res.records.interactions] == [
        ("0", "1", "train"), ("0", "2", "train"), ("0", "3", "train"), ("1", "2", "train"), ("0", "4", "test")]
    assert len(res.records.users) == 3 and len(res.records.items) == 4  # user 2, alone on a line, exists
    assert res.report["test.txt"] == {"read": 2, "loaded": 1, "quarantined": 1, "deduplicated": 0}


def test_lightgcn_creates_no_item_that_only_a_quarantined_pair_names(tmp_path):
    """User 3 is not in user_list.txt: its pair is quarantined, and item 5 was still created."""
    _files(tmp_path, {"train.txt": "0 1\n", "test.txt": "3 5\n", "user_list.txt": "org_id remap_id\nA 0\nB 1\nC 2\n"})
    res = load_source("lightgcn", tmp_path)
    _ok(res)
    assert [i["id"] for i in res.records.items] == ["1"] and res.created == {"items": 1}
    assert [q["reason"] for q in res.quarantine] == ["unknown user '3'"]


def test_lightgcn_files_with_a_byte_order_mark(tmp_path):
    _files(tmp_path, {"train.txt": "\ufeff0 1 2\n1 2\n", "test.txt": "\ufeff0 3\n",
                      "user_list.txt": "\ufefforg_id remap_id\nalice 0\nbob 1\n"})
    res = load_source("lightgcn", tmp_path)
    _ok(res)
    assert not res.quarantine and len(res.records.interactions) == 4
    assert sorted(u["id"] for u in res.records.users) == ["0", "1"]


def test_lightgcn_and_kgat_files_without_rows_are_in_the_reconciliation_with_a_warning(tmp_path, caplog):
    """An empty test.txt or kg_final.txt (a failed export) shows as read 0, not missing, and is
    warned about as an empty tabular file is (it was not)."""
    none = {"read": 0, "loaded": 0, "quarantined": 0, "deduplicated": 0}
    _files(tmp_path, {"train.txt": "0 1\n", "test.txt": "", "user_list.txt": "org_id remap_id\n"})
    with caplog.at_level("WARNING", logger="kg.governance"):
        assert load_source("lightgcn", tmp_path).report["test.txt"] == none
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["user_list.txt", "test.txt"]
    caplog.clear()
    _files(tmp_path, {"kg_final.txt": "", "entity_list.txt": "", "test.txt": "0\n"})  # a user alone: a row
    with caplog.at_level("WARNING", logger="kg.governance"):
        report = load_source("kgat", tmp_path).report
    assert report["kg_final.txt"] == report["entity_list.txt"] == none
    assert sorted(r.getMessage().split(":")[0] for r in caplog.records) == ["entity_list.txt", "kg_final.txt",
                                                                            "user_list.txt"]


def test_kgat(tmp_path):
    _files(tmp_path, {
        "train.txt": "0 0 1\n1 1\n", "test.txt": "0 2\n",
        "item_list.txt": "org_id remap_id freebase_id\n100 0 m.a\n101 1 m.b\n102 2 m.c\n",
        "entity_list.txt": "org_id remap_id\nm.a 0\nm.b 1\nm.c 2\nm.z 3\n",
        "relation_list.txt": "org_id remap_id\nhttp://rdf.freebase.com/ns/film.film.genre 0\n",
        "kg_final.txt": "0 0 3\n1 0 3\n2 7 3\n1 0\n",
    })
    res = load_source("kgat", tmp_path)
    _ok(res)
    c = res.records.counts()
    assert (c["items"], c["users"], c["interactions"], c["entities"], c["triples"]) == (3, 2, 4, 4, 2)
    assert {t["relation"] for t in res.records.triples} == {"film.film.genre"}
    assert {(r["item"], r["entity"]) for r in res.records.item_entities} == {("0", "kg:0"), ("1", "kg:1"), ("2", "kg:2")}
    assert res.report["entity_list.txt"]["deduplicated"] == 3  # items' entities already named by item_list
    assert relation_name("http://x/ns/a.b#c") == "c"
    # relation 7 is not in relation_list.txt: no made-up r7 (that name is only for a dataset without the list)
    assert [q["reason"] for q in res.quarantine] == ["relation id 7 not in relation_list.txt", "expected 3 fields, got 2"]


def test_lightgcn_lines_that_are_not_pairs_are_quarantined_and_limits_count_data_lines(tmp_path):
    """A lone token that is not an id, and non-ASCII digits, are quarantined (counted), never lost;
    a list's header is found after blank lines; `limit` counts non-blank lines of the split files
    and leaves the id lists whole, so a sample's pairs resolve."""
    _files(tmp_path, {"train.txt": "\n\n0 1 2\nabc\n\u00b2 1\n1 2\n",
                      "user_list.txt": "\norg_id remap_id\nu0 0\nu1 1\nu2 2\n"})
    res = load_source("lightgcn", tmp_path, cfg=CREATE)
    _ok(res)
    assert sorted(q["line"] for q in res.quarantine) == [4, 5]
    assert res.report["train.txt"] == {"read": 5, "loaded": 3, "quarantined": 2, "deduplicated": 0}
    assert sorted(u["id"] for u in res.records.users) == ["0", "1", "2"]  # not the header's "remap_id"
    sample = load_source("lightgcn", tmp_path, cfg=CREATE, limit=1)
    assert sample.report["train.txt"]["read"] == 2 and not sample.quarantine  # line 3's two pairs
    assert sample.report["user_list.txt"]["loaded"] == 3


def test_kgat_and_lightgcn_id_lists_quarantine_ids_that_are_not_integers(tmp_path):
    """A header that is not ``org_id remap_id`` (``uid remap``, ``head relation tail``) was loaded as
    data: user ``remap``, the triple kg:head -rrelation-> kg:tail; so was an item_list line ``b x m.b``."""
    _files(tmp_path, {"train.txt": "0 0\n", "user_list.txt": "uid remap\na 0\n",
                      "item_list.txt": "org_id remap_id freebase_id\na 0 m.a\nb x m.b\n",
                      "entity_list.txt": "org_id remap_id\nm.a 0\nm.z z\n",
                      "kg_final.txt": "head relation tail\n0 0 1\n0 1 y\n"})
    res = load_source("kgat", tmp_path)
    _ok(res)
    assert [u["id"] for u in res.records.users] == ["0"] and [i["id"] for i in res.records.items] == ["0"]
    assert [(t["head"], t["relation"], t["tail"]) for t in res.records.triples] == [("kg:0", "r0", "kg:1")]
    assert sorted((q["source"], q["line"], q["reason"]) for q in res.quarantine) == [
        ("entity_list.txt", 3, "remap_id is not a non-negative integer id: 'z'"),
        ("item_list.txt", 3, "remap_id is not a non-negative integer id: 'x'"),
        ("kg_final.txt", 1, "head is not a non-negative integer id: 'head'"),
        ("kg_final.txt", 3, "tail is not a non-negative integer id: 'y'"),
        ("user_list.txt", 1, "remap_id is not a non-negative integer id: 'remap'")]
    (tmp_path / "kg_final.txt").unlink()
    lgcn = load_source("lightgcn", tmp_path)
    _ok(lgcn)
    assert [u["id"] for u in lgcn.records.users] == ["0"] and [i["id"] for i in lgcn.records.items] == ["0"]
    assert lgcn.report["item_list.txt"] == {"read": 2, "loaded": 1, "quarantined": 1, "deduplicated": 0}


@pytest.mark.parametrize("fmt", ["lightgcn", "kgat"])
def test_a_wrong_lightgcn_or_kgat_path_is_an_error_not_an_empty_load(tmp_path, fmt):
    """A missing directory, one without train.txt / test.txt, or the path of train.txt itself
    would load nothing and reconcile: each is refused, naming the path."""
    with pytest.raises(FileNotFoundError, match="no such"):
        load_source(fmt, tmp_path / "nope")
    _files(tmp_path, {"readme.txt": "not a split\n"})
    with pytest.raises(FileNotFoundError, match="neither"):
        load_source(fmt, tmp_path)
    _files(tmp_path, {"train.txt": "0 1\n"})
    with pytest.raises(FileNotFoundError, match="is a file"):
        load_source(fmt, tmp_path / "train.txt")
    assert load_source(fmt, tmp_path).records.counts()["interactions"] == 1


def test_kgat_relation_list_errors_are_errors(tmp_path):
    _files(tmp_path, {"train.txt": "0 0\n", "kg_final.txt": "0 0 1\n",
                      "relation_list.txt": "org_id remap_id\nhttp://x/r0 0\nbroken\n"})
    with pytest.raises(ValueError, match="relation_list.txt:3: expected `org_id remap_id`"):
        load_source("kgat", tmp_path, cfg=CREATE)
    _files(tmp_path, {"relation_list.txt": "org_id remap_id\nhttp://x/r0 0\nhttp://x/r1 0\n"})
    with pytest.raises(ValueError, match="relation 0 is named twice"):
        load_source("kgat", tmp_path, cfg=CREATE)


def test_kgat_relations_sharing_a_last_segment_stay_two_relations(tmp_path):
    """schema.org/name and foaf/0.1/name both end in `name`: named by their whole IRIs, the two
    triples between the same entities are two facts, not one loaded and one "duplicate"."""
    _files(tmp_path, {"train.txt": "0 0\n", "kg_final.txt": "0 0 1\n0 1 1\n0 2 1\n",
                      "relation_list.txt": "org_id remap_id\nhttp://schema.org/name 0\n"
                                           "http://xmlns.com/foaf/0.1/name 1\nhttp://x/ns/genre 2\n"})
    res = load_source("kgat", tmp_path, cfg=CREATE)
    _ok(res)
    assert sorted(t["relation"] for t in res.records.triples) == [
        "genre", "http://schema.org/name", "http://xmlns.com/foaf/0.1/name"]
    assert res.report["kg_final.txt"] == {"read": 3, "loaded": 3, "quarantined": 0, "deduplicated": 0}


def test_lightgcn_ids_are_integers_and_bytes_that_are_not_utf8_are_quarantined(tmp_path):
    """`07` is user 7, as the LightGCN code reads it (one user, not two); an id list line with
    bytes that are not UTF-8 is quarantined with its reason, not loaded with U+FFFD in its org_id."""
    _files(tmp_path, {"train.txt": "7 1\n07 2\n", "test.txt": "0007 3\n",
                      "user_list.txt": b"org_id remap_id\nal\xffce 7\nbob 8\n"})
    res = load_source("lightgcn", tmp_path, cfg=CREATE)
    _ok(res)
    assert sorted(u["id"] for u in res.records.users) == ["7", "8"]
    assert {(r["user"], r["item"]) for r in res.records.interactions} == {("7", "1"), ("7", "2"), ("7", "3")}
    assert [(q["source"], q["line"]) for q in res.quarantine] == [("user_list.txt", 2)]
    assert res.quarantine[0]["reason"].startswith("invalid utf-8 bytes") and "\ufffd" in res.quarantine[0]["raw"]
    assert all("\ufffd" not in (u.get("props") or {}).get("org_id", "") for u in res.records.users)


def test_lightgcn_pair_files_refuse_ids_that_are_not_64_bit_integers(tmp_path):
    from kg.sources.lightgcn import is_index, iter_pairs

    assert is_index("9223372036854775807") and is_index("00009223372036854775807") and is_index("0")
    for bad in ("9223372036854775808", "1" * 5000, "1_0", "\u0663", "-1", ""):
        assert not is_index(bad)
    (tmp_path / "train.txt").write_text("1 2\n3 9223372036854775808\n")
    with pytest.raises(ValueError, match=r"train.txt:2: not a non-negative integer id"):
        list(iter_pairs(tmp_path / "train.txt"))


def test_triples_reader(tmp_path):
    _files(tmp_path, {"kg.txt": "1\tmusic.artist.origin\t2\r\n2\tfilm.actor.film\t3\r\n",
                      "item_index2entity_id.txt": "7\t1\r\n"})
    res = load_source("triples", tmp_path, cfg=CREATE)
    _ok(res)
    assert len(res.records.triples) == 2 and res.created == {"entities": 3, "items": 1}
    assert res.records.item_entities == [{"item": "7", "entity": "kg:1", "relation": "same_as"}]


def test_triples_reader_takes_rdf_predicates(tmp_path):
    """N-Triples-style predicates load as relation names; a predicate with a space is quarantined."""
    _files(tmp_path, {"kg.txt": "a\t<http://xmlns.com/foaf/0.1/knows>\tb\n"
                                "b\thttp://www.w3.org/1999/02/22-rdf-syntax-ns#type\tc\n"
                                "c\thttp://x/has space\td\n"})
    res = load_source("triples", tmp_path, cfg=CREATE)
    assert [t["relation"] for t in res.records.triples] == [
        "http://xmlns.com/foaf/0.1/knows", "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"]
    assert [q["line"] for q in res.quarantine] == [3] and "relation" in res.quarantine[0]["reason"]
    assert res.report["kg.txt"] == {"read": 3, "loaded": 2, "quarantined": 1, "deduplicated": 0}


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown source format"):
        load_source("parquet", ".")
    with pytest.raises(ValueError, match="mapping"):
        load_source("tabular", ".")
    assert "lastfm" in FORMATS


# ----------------------------------------------------------------------------- shared datasets (slices)


@pytest.mark.datasets
def test_lastfm_slice():
    res = load_source("lastfm", dataset_dir("lastfm"), limit=300, cfg=CREATE)
    _ok(res)
    assert {f: c["read"] for f, c in res.report.items()} == {f: 300 for f in (
        "artists.dat", "user_artists.dat", "tags.dat", "user_friends.dat", "kg.txt", "item_index2entity_id.txt")}
    c = res.records.counts()
    assert c["interactions"] == 300 and c["triples"] == 300 and c["friends"] == 300 and c["item_entities"] == 300
    assert all(i["kind"] == "listen" and i["weight"] > 0 for i in res.records.interactions)
    assert res.records.items[0] == {"id": "1", "title": "MALICE MIZER", "description": "",
                                    "props": {"url": "http://www.last.fm/music/MALICE+MIZER"}}
    assert not res.quarantine


@pytest.mark.datasets
def test_lastfm_slice_quarantines_unknown_references():
    res = load_source("lastfm", dataset_dir("lastfm"), limit=300)
    _ok(res)
    # user_artists.dat names artists beyond the first 300 of artists.dat: those events are quarantined
    assert res.report["user_artists.dat"]["quarantined"] > 0
    assert all(q["reason"].startswith("unknown") for q in res.quarantine)


@pytest.mark.datasets
def test_ml100k_slice():
    res = load_source("ml100k", dataset_dir("ml-100k"), limit=200, cfg=CREATE)
    _ok(res)
    c = res.records.counts()
    assert c["interactions"] == 200
    assert sum(e["type"] == "genre" for e in res.records.entities) == 19
    assert {r["entity"] for r in res.records.user_entities if r["user"] == "1"} == {"gender:M", "occupation:technician"}
    first = res.records.interactions[0]
    assert first == {"user": "196", "item": "242", "kind": "rating", "weight": 3.0, "ts": 881250949, "split": ""}
    toy = next(i for i in res.records.items if i["id"] == "1")
    assert toy["title"] == "Toy Story (1995)" and toy["props"]["release_date"] == "01-Jan-1995"
    assert {r["entity"] for r in res.records.item_entities if r["item"] == "1"} == {
        "genre:Animation", "genre:Children's", "genre:Comedy"}
    assert next(u for u in res.records.users if u["id"] == "1")["props"] == {
        "age": 24, "gender": "M", "occupation": "technician", "zip": "85711"}


@pytest.mark.datasets
def test_gowalla_slice():
    res = load_source("lightgcn", dataset_dir("gowalla"), limit=50)
    _ok(res)
    # the lists are read whole, so the 50 lines' pairs all resolve
    assert res.report["user_list.txt"]["loaded"] == 29_858 and res.report["item_list.txt"]["loaded"] == 40_981
    assert res.report["train.txt"]["read"] > 50 and not res.quarantine
    assert {i["split"] for i in res.records.interactions} == {"train", "test"}


# ----------------------------------------------------------------------------- Neo4j


@pytest.mark.neo4j
def test_injection_strings_stored_as_data_and_ingest_idempotent(graph):
    import kg.ingest as ingest_mod
    from kg.governance import Governor

    evil = "x'}) DETACH DELETE n //"
    gov = Governor()
    gov.add_user("u", 1, "r", id=evil)
    gov.add_item("i", 1, "r", id="i1", title=evil, description="MATCH (n) DETACH DELETE n")
    gov.add_entity("e", 1, "r", id="genre:x", type="genre", name=evil)
    gov.add_interaction("x", 1, "r", user=evil, item="i1", kind="view", ts="2020-01-01T00:00:00Z")
    gov.add_item_entity("x", 2, "r", item="i1", entity="genre:x", relation="genre")
    gov.add_item_entity("x", 3, "r", item="i1", entity="genre:x", relation="X]->(n) DETACH DELETE n //")
    gov.add_triple("x", 4, "r", head="genre:x", relation="music.artist.origin", tail="kg:1")
    res = gov.finish()
    assert len(res.quarantine) == 1
    cfg = IngestConfig()
    ingest_mod.ingest(graph, res.records, cfg, progress=False)
    first = ingest_mod.graph_counts(graph)
    ingest_mod.ingest(graph, res.records, cfg, progress=False)
    assert ingest_mod.graph_counts(graph) == first
    rows = _read(graph, "MATCH (u:User)-[r:INTERACTED]->(i:Item) RETURN u.id AS u, i.title AS t, r.ts AS ts")
    assert [(r["u"], r["t"], r["ts"]) for r in rows] == [(evil, evil, 1577836800)]
    labels = _read(graph, "CALL db.labels() YIELD label RETURN collect(label) AS l")[0]["l"]
    types = _read(graph, "CALL db.relationshipTypes() YIELD relationshipType AS t RETURN collect(t) AS l")[0]["l"]
    assert set(labels) <= {"User", "Item", "Query", "Entity", "KgrecMeta", "KgrecLock", "KgrecDemo"}
    assert set(types) <= {"INTERACTED", "SEARCHED", "RELEVANT", "HAS_ATTRIBUTE", "RELATED", "SAME_AS", "FRIEND"}


USER_ATTRIBUTE_MAPPING = {"files": [
    {"path": "users.csv", "role": "users", "id": "id", "props": {"age": "int"},
     "attributes": [{"column": "job", "relation": "occupation"}]},
    {"path": "items.csv", "role": "items", "id": "id", "title": "title"},
    {"path": "events.csv", "role": "interactions", "user": "user", "item": "item"},
]}


def _user_attribute_files(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return _files(tmp_path, {"users.csv": "id,age,job\nu1,30,nurse\nu2,41,nurse\nu3,25,\n",
                             "items.csv": "id,title\ni1,One\ni2,Two\n",
                             "events.csv": "user,item\nu1,i1\nu2,i2\nu3,i1\n"})


def test_user_attributes_become_entities_and_edges(tmp_path):
    res = load_source("tabular", _user_attribute_files(tmp_path), mapping=USER_ATTRIBUTE_MAPPING)
    _ok(res)
    assert [e["id"] for e in res.records.entities] == ["occupation:nurse"]  # declared once, deduplicated
    assert res.records.user_entities == [
        {"user": "u1", "entity": "occupation:nurse", "relation": "occupation", "stated": True},  # a users row's own
        {"user": "u2", "entity": "occupation:nurse", "relation": "occupation", "stated": True}]  # u3's empty job: no edge


def test_numeric_properties_in_other_scripts_or_with_separators_are_quarantined(tmp_path):
    files = _files(tmp_path, {"users.csv": "id,age,job\nu1,30,nurse\nu2,4_1,nurse\nu3,\u0662\u0665,\n"
                                           "u4,99999999999999999999,\n",
                              "items.csv": "id,title\ni1,One\n", "events.csv": "user,item\nu1,i1\n"})
    res = load_source("tabular", files, mapping=USER_ATTRIBUTE_MAPPING)
    assert [u["id"] for u in res.records.users] == ["u1"]
    reasons = [q["reason"] for q in res.quarantine]
    assert len(reasons) == 3 and all("'age' is not int" in r for r in reasons), reasons
    assert res.reconciles()


def test_user_attribute_naming_an_unknown_user_is_quarantined():
    from kg.governance import govern_records
    from kg.records import GraphRecords

    recs = GraphRecords(users=[{"id": "u1"}], entities=[{"id": "occupation:nurse", "type": "occupation",
                                                         "name": "nurse"}],
                        user_entities=[{"user": "u1", "entity": "occupation:nurse", "relation": "occupation"},
                                       {"user": "ghost", "entity": "occupation:nurse", "relation": "occupation"},
                                       {"user": "u1", "entity": "occupation:nurse", "relation": "a`b"}])
    res = govern_records(recs)
    assert res.reconciles() and len(res.records.user_entities) == 1
    reasons = sorted(q["reason"] for q in res.quarantine)
    assert len(reasons) == 2 and any("unknown" in r for r in reasons)


@pytest.mark.neo4j
def test_user_attributes_reach_the_graph_and_the_export(graph, tmp_path):
    from kg.export import export_snapshot
    from kg.ingest import graph_counts, ingest
    from kg.snapshot import Snapshot
    from kgrec.config import ExportConfig

    res = load_source("tabular", _user_attribute_files(tmp_path / "src"), mapping=USER_ATTRIBUTE_MAPPING)
    ingest(graph, res.records, IngestConfig(), progress=False)
    first = graph_counts(graph)
    ingest(graph, res.records, IngestConfig(), progress=False)
    assert graph_counts(graph) == first  # idempotent
    rows = _read(graph, "MATCH (u:User)-[r:HAS_ATTRIBUTE]->(e:Entity) RETURN u.id AS u, r.relation AS rel, e.id AS e "
                        "ORDER BY u")
    assert rows == [{"u": "u1", "rel": "occupation", "e": "occupation:nurse"},
                    {"u": "u2", "rel": "occupation", "e": "occupation:nurse"}]
    snap = Snapshot.load(export_snapshot(graph, ExportConfig(out_dir=tmp_path / "snap", split="ratio"), "ua"))
    assert snap.relation_types["user:occupation"] == ("user", "entity")
    edges = snap.relations["user:occupation"]
    assert edges.shape == (2, 2) and {snap.ids["user"][u] for u in edges[0]} == {"u1", "u2"}


@pytest.mark.neo4j
@pytest.mark.datasets
def test_ml100k_slice_ingest_idempotent(graph):
    import kg.ingest as ingest_mod
    res = load_source("ml100k", dataset_dir("ml-100k"), limit=100, cfg=CREATE)
    cfg = IngestConfig()
    ingest_mod.ingest(graph, res.records, cfg, progress=False)
    first = ingest_mod.graph_counts(graph)
    assert first["users"] > 0 and first["relationships"] > 0  # something was written, then nothing more
    ingest_mod.ingest(graph, res.records, cfg, progress=False)
    assert ingest_mod.graph_counts(graph) == first


# ----------------------------------------------------------------------------- quality


def test_quality_summary_records_and_snapshot(tmp_path):
    from kg.quality import plot_degree_histograms, quality_summary
    from kg.records import GraphRecords
    from kg.sources.lightgcn import snapshot_from_lightgcn

    _files(tmp_path, {"train.txt": "0 0 1 2 3 4 5\n1 0 1\n", "test.txt": "0 6\n2 0\n"})
    res = load_source("lightgcn", tmp_path)
    q = quality_summary(res.records)
    assert (q["users"], q["items"], q["interactions"]) == (3, 7, 10)
    assert q["density"] == pytest.approx(10 / 21) and q["sparsity"] == pytest.approx(11 / 21)
    assert q["user_degree"]["max"] == 7 and q["cold_users"] == 2 and q["cold_items"] == 7
    assert q["text_coverage"]["title"] == 0.0
    # one item of four has its own row with a title; ingest makes the three only events name bare
    named = GraphRecords(items=[{"id": "a", "title": "A"}], interactions=[
        {"user": "u", "item": i, "kind": "view", "weight": 1.0, "ts": 0, "split": ""} for i in "abcd"])
    assert quality_summary(named)["text_coverage"] == {"title": 0.25, "description": 0.0, "any": 0.25}
    snapshot = snapshot_from_lightgcn(tmp_path)
    snap = quality_summary(snapshot)
    assert (snap["users"], snap["items"], snap["interactions"], snap["cold_users"]) == (3, 7, 10, 2)
    snapshot.meta["raw_events"] = 12  # an exported snapshot: two repeats collapsed into their pairs
    assert quality_summary(snapshot)["events"] == 12
    (tmp_path / "twice").mkdir()
    _files(tmp_path / "twice", {"train.txt": "0 1 1\n1 0\n", "test.txt": "0 1\n"})  # a pair thrice, two splits
    twice = quality_summary(snapshot_from_lightgcn(tmp_path / "twice"))
    assert (twice["interactions"], twice["density"], twice["user_degree"]["max"]) == (2, 0.5, 1)
    (tmp_path / "empty").mkdir()
    _files(tmp_path / "empty", {"train.txt": "", "test.txt": "0 1\n"})  # was numpy's "zero-size array" error
    with pytest.raises(ValueError, match="train.txt holds no"):
        snapshot_from_lightgcn(tmp_path / "empty")
    out = plot_degree_histograms(res.records, tmp_path / "plots" / "degrees.png", title="toy")
    assert out.is_file() and out.stat().st_size > 1000
    # a source's name is a title, not mathtext: `$^$` used to raise after the data was written
    assert plot_degree_histograms(res.records, tmp_path / "plots" / "sales.png", title="sales$^$2024").is_file()


def test_quality_summary_counts_pairs_and_names_relations_as_the_export():
    """Repeated events of a pair are one interaction (density stays <= 1); relations carry the
    export's prefixes, so a genre attribute and a KG relation called genre stay apart."""
    from kg.quality import quality_summary
    from kg.records import GraphRecords

    records = GraphRecords(
        users=[{"id": "u1"}], items=[{"id": "i1"}],
        interactions=[{"user": "u1", "item": "i1", "kind": k, "ts": t} for k, t in (("view", 1), ("view", 2), ("buy", 3))],
        item_entities=[{"item": "i1", "entity": "genre:x", "relation": "genre"}],
        user_entities=[{"user": "u1", "entity": "gender:f", "relation": "gender"}],
        triples=[{"head": "genre:x", "relation": "genre", "tail": "kg:y"}],
        friends=[{"user": "u1", "friend": "u2"}],
        user_queries=[{"user": "u1", "query": "q1", "ts": t} for t in (100, 200)])  # searched twice: one edge
    q = quality_summary(records)
    assert (q["interactions"], q["events"], q["density"], q["user_degree"]["max"]) == (1, 3, 1.0, 1)
    assert q["relations"] == {"has:genre": 1, "user:gender": 1, "kg:genre": 1, "friend": 1, "searched": 1}


def test_a_later_blank_entity_name_keeps_the_stored_one(graph):
    from kg.ingest import ingest
    from kg.records import GraphRecords
    from kgrec.config import IngestConfig

    for name in ("Acme", "", None):
        ingest(graph, GraphRecords(entities=[{"id": "brand:1", "type": "brand", "name": name}]), IngestConfig(),
               progress=False)
    stored = graph.driver.execute_query("MATCH (e:Entity {id: 'brand:1'}) RETURN e.name AS name, e.type AS type",
                                        database_=graph.database).records
    assert [dict(r) for r in stored] == [{"name": "Acme", "type": "brand"}]


def test_a_missing_tabular_path_is_named_not_blamed_on_the_mapping(tmp_path):
    """A mapping of one file without a path takes the file given; a path that does not exist said
    "files entry ... has no path", as if the mapping were wrong."""
    mapping = {"files": [{"role": "interactions", "user": "u", "item": "i", "create_nodes": True}]}
    with pytest.raises(FileNotFoundError, match="nosuch.csv: no such file or directory"):
        load_source("tabular", tmp_path / "nosuch.csv", mapping)
    _files(tmp_path, {"ev.csv": "u,i\nu1,i1\n"})
    assert load_source("tabular", tmp_path / "ev.csv", mapping).records.counts()["interactions"] == 1


def test_kgat_without_an_item_list_links_each_item_to_its_entity(tmp_path):
    """KGAT numbers item i as entity i; the link came only from item_list.txt, which KGAT's own
    loader does not need: without it the items were cut off from the knowledge graph."""
    _files(tmp_path, {"train.txt": "0 0 1\n", "test.txt": "0 2 5\n", "kg_final.txt": "0 0 3\n1 0 3\n2 1 4\n"})
    res = load_source("kgat", tmp_path)
    _ok(res)
    # item 5 has no entity in kg_final: no link, and no entity made up for it
    assert sorted((r["item"], r["entity"], r["relation"]) for r in res.records.item_entities) == [
        ("0", "kg:0", "same_as"), ("1", "kg:1", "same_as"), ("2", "kg:2", "same_as")]
    assert "kg:5" not in {e["id"] for e in res.records.entities}
    assert res.report["kg_final.txt#items"] == {"read": 3, "loaded": 3, "quarantined": 0, "deduplicated": 0}


def test_kgat_relation_iris_whose_last_segment_is_no_name_keep_the_whole_iri(tmp_path):
    _files(tmp_path, {"train.txt": "0 0\n", "kg_final.txt": "0 0 1\n",
                      "relation_list.txt": "org_id remap_id\nhttp://dbpedia.org/property/name%28s%29 0\n"})
    res = load_source("kgat", tmp_path)  # its triples were all quarantined as of an invalid name
    _ok(res)
    assert [t["relation"] for t in res.records.triples] == ["http://dbpedia.org/property/name%28s%29"]


def test_lightgcn_lone_user_missing_from_the_user_list_is_quarantined(tmp_path):
    """With user_list.txt, a line of only a user the list lacks vanished: neither read nor quarantined."""
    _files(tmp_path, {"user_list.txt": "org_id remap_id\na 0\n", "train.txt": "0 0\n5\n0\n"})
    res = load_source("lightgcn", tmp_path)
    _ok(res)
    assert [(q["line"], q["reason"]) for q in res.quarantine] == [(2, "unknown user '5' (not in user_list.txt)")]
    assert [u["id"] for u in res.records.users] == ["0"]
    created = load_source("lightgcn", tmp_path, cfg=IngestConfig(unknown_reference="create"))
    assert sorted(u["id"] for u in created.records.users) == ["0", "5"] and not created.quarantine
    # a user the graph holds is known, as for a pair: neither quarantined nor made again
    stored = load_source("lightgcn", tmp_path, known=lambda kind, ids: [i for i in ids if (kind, i) == ("users", "5")])
    assert not stored.quarantine and [u["id"] for u in stored.records.users] == ["0"]
    assert stored.in_graph == {"users": 1}


def test_a_pair_in_two_splits_says_when_the_row_it_kept_is_quarantined_too(tmp_path):
    _files(tmp_path, {"user_list.txt": "org_id remap_id\na 0\n", "train.txt": "3 0\n", "test.txt": "3 0\n"})
    res = load_source("lightgcn", tmp_path)
    _ok(res)
    assert sorted((q["source"], q["reason"]) for q in res.quarantine) == [
        ("test.txt", "the same event is already in split 'train' (train.txt:1); that row is quarantined too "
                     "(unknown user '3')"),
        ("train.txt", "unknown user '3'")]


def test_recbole_valid_or_test_files_without_the_train_file_are_refused(tmp_path):
    """A stray <name>.test.inter stood for the whole dataset: <name>.inter was not read at all."""
    header = "user_id:token\titem_id:token\n"
    (tmp_path / "rb").mkdir()
    d = _files(tmp_path / "rb", {"rb.inter": header + "1\t1\n1\t2\n2\t3\n", "rb.test.inter": header + "2\t3\n"})
    with pytest.raises(MappingError, match="rb.test.inter without rb.train.inter"):
        load_source("recbole", d)
    (tmp_path / "data").mkdir()  # named after neither dataset
    both = _files(tmp_path / "data", {"foo.inter": header + "1\t1\n", "bar.train.inter": header + "1\t1\n"})
    with pytest.raises(FileNotFoundError, match="give a folder that holds one dataset's files"):
        load_source("recbole", both)


@pytest.mark.neo4j
def test_an_items_file_reloaded_replaces_the_attribute_values_its_rows_give(graph, tmp_path):
    """A product moved from category shoes to home kept both: links only ever added up across loads.
    An item's own row states its values now; events' attribute columns still only add."""
    from kg.ingest import ingest

    items = {"path": "items.csv", "role": "items", "id": "id", "title": "title",
             "attributes": [{"column": "category", "relation": "category"},
                            {"column": "tags", "relation": "tag", "separator": "|"}]}
    events = {"path": "events.csv", "role": "interactions", "user": "user", "item": "item", "create_users": True,
              "attributes": [{"column": "promo", "relation": "category"}]}

    def load(files: dict[str, str], *specs: dict) -> dict:
        folder = tmp_path / f"load{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        res = load_source("tabular", _files(folder, files), mapping={"files": list(specs)})
        _ok(res)
        return ingest(graph, res.records, IngestConfig(), progress=False)

    def links() -> set[tuple[str, str]]:
        return {(r["i"], r["e"]) for r in _read(graph, "MATCH (i:Item)-[:HAS_ATTRIBUTE]->(e) RETURN i.id AS i, e.id AS e")}

    load({"items.csv": "id,title,category,tags\nP1,Sneaker,shoes,a|b\nP2,Pan,kitchen,c\n"}, items)
    assert links() == {("P1", "category:shoes"), ("P1", "tag:a"), ("P1", "tag:b"), ("P2", "category:kitchen"),
                       ("P2", "tag:c")}
    # P1 moves to home; its blank tags leave its tags alone; P2, not in the file, keeps its own
    report = load({"items.csv": "id,title,category,tags\nP1,Sneaker v2,home,\n"}, items)
    assert report["attributes_unlinked"] == 1
    assert links() == {("P1", "category:home"), ("P1", "tag:a"), ("P1", "tag:b"), ("P2", "category:kitchen"),
                       ("P2", "tag:c")}
    # an event's attribute column adds a value (events do not describe the whole item)
    report = load({"events.csv": "user,item,promo\nu1,P2,sale\n"}, events)
    assert report["attributes_unlinked"] == 0 and ("P2", "category:kitchen") in links() and ("P2", "category:sale") in links()
    # the same load again changes nothing (P1's one category stays, stated once more)
    again = load({"items.csv": "id,title,category,tags\nP1,Sneaker v2,home,a|b\n"}, items)
    assert again["attributes_unlinked"] == 0 and again["relationships_created"] == 0
    # a row with a quarantined flag cell, or flags all off, states no genres: the stored ones stay
    flagged = {"path": "items.csv", "role": "items", "id": "id",
               "flags": {"columns": ["fa", "fb", "fc"], "names": ["A", "B", "C"], "relation": "genre"}}
    load({"items.csv": "id,fa,fb,fc\nP2,0,1,1\n"}, flagged)
    for row in ("P2,0,1,x", "P2,0,0,0", "P2,,,"):
        report = load({"items.csv": f"id,fa,fb,fc\n{row}\n"}, flagged)
        assert report["attributes_unlinked"] == 0 and {("P2", "genre:B"), ("P2", "genre:C")} <= links(), row
    assert load({"items.csv": "id,fa,fb,fc\nP2,1,0,0\n"}, flagged)["attributes_unlinked"] == 2


def test_a_fields_constant_fills_its_columns_blank_cells(tmp_path):
    """weight = "qty" with weight_value = 1 quarantined every blank qty as a missing weight: the
    constant was ignored without a word once the column was mapped."""
    _files(tmp_path, {"events.csv": "user,item,qty,type\nu1,i1,3,purchase\nu1,i2,,click\nu2,i1, ,\n"})
    res = load_source("tabular", tmp_path, mapping={"files": [{
        "path": "events.csv", "role": "interactions", "user": "user", "item": "item", "weight": "qty",
        "weight_value": 1, "kind": "type", "kind_value": "view", "create_nodes": True}]})
    _ok(res)
    assert not res.quarantine
    assert sorted((r["user"], r["item"], r["weight"], r["kind"]) for r in res.records.interactions) == [
        ("u1", "i1", 3.0, "purchase"), ("u1", "i2", 1.0, "click"), ("u2", "i1", 1.0, "view")]
    # in JSONL a key left out is a blank cell too
    (tmp_path / "events.jsonl").write_text('{"user": "u1", "item": "i1", "qty": null}\n{"user": "u2", "item": "i1"}\n')
    res = load_source("tabular", tmp_path / "events.jsonl", mapping={"files": [{
        "path": "events.jsonl", "format": "jsonl", "role": "interactions", "user": "user", "item": "item",
        "weight": "qty", "weight_value": 1, "create_nodes": True}]})
    _ok(res)
    assert not res.quarantine and [r["weight"] for r in res.records.interactions] == [1.0, 1.0]
    # a constant that fills cells is checked up front, as one alone is: not one quarantine per blank row
    with pytest.raises(MappingError, match="kind_value"):
        load_source("tabular", tmp_path / "events.csv", mapping={"files": [{
            "path": "events.csv", "role": "interactions", "user": "user", "item": "item", "kind": "type",
            "kind_value": "page view", "create_nodes": True}]})


def test_a_load_with_quarantined_rows_is_summed_up_per_file(tmp_path):
    """kgrec ingest exited 0 with 3,380 of 3,787 events quarantined and said so only inside its JSON."""
    from kg.governance import quarantine_summary

    _files(tmp_path, {"events.csv": "user,item,qty\nu1,i1,2\nu1,i2,\nu2,i3,\nu3,i9,x\n"})
    res = load_source("tabular", tmp_path, mapping={"files": [{
        "path": "events.csv", "role": "interactions", "user": "user", "item": "item", "weight": "qty",
        "create_nodes": True}]})
    assert quarantine_summary(res) == [
        "events.csv: 3 of 4 records quarantined (2 x missing weight; 1 x weight is not a number: '…')"]
