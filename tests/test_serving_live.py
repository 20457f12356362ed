"""A running server follows the published model: new versions are served without a restart, and a
version that does not load leaves the previous one serving."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gnn.artifact import in_use, publish
from gnn.train import train
from serving import LiveModel
from serving.http import create_app
from test_gnn import planted_snapshot, tiny_cfg


def _two_versions(out: Path) -> tuple[Path, Path]:
    snap = planted_snapshot(num_users=40)
    first = train(snap, tiny_cfg(epochs=1), out, progress=False)
    second = train(snap, tiny_cfg(epochs=2), out, progress=False)
    assert first.name != second.name and (out / "current").resolve() == second.resolve()
    return first, second


def test_the_http_api_serves_each_newly_published_version_and_survives_a_broken_one(tmp_path, caplog, monkeypatch):
    import threading

    from serving import live as live_module

    first, second = _two_versions(tmp_path)
    publish(first, tmp_path)
    app = create_app(tmp_path / "current", reload_check_s=0)
    client, live = TestClient(app), app.state.model

    def wait_for_reload() -> None:
        live.wait_for_reload(120)
        assert live._loader is None or not live._loader.is_alive(), "the reload did not finish"

    def version_after_reload() -> str:
        client.get("/health")  # notices the link moved: loads in the background, answers at once
        wait_for_reload()
        return client.get("/health").json()["model_version"]

    assert client.get("/health").json()["model_version"] == first.name
    assert in_use(first) and not in_use(second)  # what prune must leave alone
    real_load, loading, may_finish = live_module.Recommender.load, threading.Event(), threading.Event()

    def slow_load(path, cfg=None):  # holds the new version's load until the old model has answered
        loading.set()
        assert may_finish.wait(120)
        return real_load(path, cfg)

    monkeypatch.setattr(live_module.Recommender, "load", slow_load)
    publish(second, tmp_path)
    assert client.get("/health").json()["model_version"] == first.name  # notices, starts the load
    assert loading.wait(120)
    assert client.get("/health").json()["model_version"] == first.name  # the old model while the new loads
    may_finish.set()
    wait_for_reload()
    monkeypatch.undo()
    assert client.get("/recommend/u1", params={"k": 3}).json()["model_version"] == second.name
    assert in_use(second) and not in_use(first)  # released at the swap

    broken = tmp_path / "broken"
    shutil.copytree(second, broken)
    (broken / "ids.json").write_text("{not json")
    publish(broken, tmp_path)
    with caplog.at_level(logging.ERROR, logger="serving.live"):
        assert version_after_reload() == second.name  # still the last good one
        assert version_after_reload() == second.name
    assert in_use(second) and not in_use(broken)
    assert caplog.text.count("did not load") == 1  # tried once, not on every request
    health = client.get("/health").json()  # a client sees it too, not only the log
    assert health["reload_error"].startswith(f"{broken.resolve()}: ValueError")
    assert "ids.json cannot be read (JSONDecodeError" in health["reload_error"]
    publish(second, tmp_path)  # the link moves on (back to the served version), then to the broken one
    assert version_after_reload() == second.name and client.get("/health").json()["reload_error"] is None
    publish(broken, tmp_path)
    with caplog.at_level(logging.ERROR, logger="serving.live"):
        assert version_after_reload() == second.name
    assert caplog.text.count("did not load") == 2  # tried again at once, not after retry_s
    live.retry_s = 0  # a failed load is retried after retry_s
    with caplog.at_level(logging.ERROR, logger="serving.live"):
        assert version_after_reload() == second.name
    assert caplog.text.count("did not load") >= 3
    wait_for_reload()
    publish(first, tmp_path)  # rolling back is publishing the older version again
    assert version_after_reload() == first.name
    assert client.get("/health").json()["reload_error"] is None
    (tmp_path / "no-model").mkdir()  # the link pointed by hand at a directory that is no artifact
    (tmp_path / "link").symlink_to(tmp_path / "no-model")
    os.replace(tmp_path / "link", tmp_path / "current")
    with caplog.at_level(logging.ERROR, logger="serving.live"):
        assert version_after_reload() == first.name
    assert "is not a model artifact" in client.get("/health").json()["reload_error"]
    assert list((tmp_path / "no-model").iterdir()) == []  # it got an in-use mark, as a start-up no longer gave


def test_a_version_whose_files_disagree_is_not_swapped_in(tmp_path):
    """ids.json naming fewer items than embeddings.npz holds (a copy cut short, an edit) loaded and
    was swapped in, then every list reaching a missing id failed: it is refused at the load."""
    import json

    first, second = _two_versions(tmp_path)
    publish(first, tmp_path)
    app = create_app(tmp_path / "current", reload_check_s=0)
    client, live = TestClient(app), app.state.model
    cut = tmp_path / "cut"
    shutil.copytree(second, cut)
    ids = json.loads((cut / "ids.json").read_text())
    ids["item"], ids["item_title"] = ids["item"][:-5], ids["item_title"][:-5]
    (cut / "ids.json").write_text(json.dumps(ids))
    publish(cut, tmp_path)
    client.get("/health")  # notices the link moved: loads in the background
    live.wait_for_reload(120)
    health = client.get("/health").json()
    assert health["model_version"] == first.name
    assert "not a whole model artifact" in health["reload_error"] and "embeddings.npz has" in health["reload_error"]
    assert client.get("/recommend/u1", params={"k": 1000}).status_code == 200


def test_an_artifact_missing_a_file_its_own_files_name_or_with_malformed_lists_is_refused(tmp_path):
    """A graph filter without filter.npz or config.json loaded and ranked otherwise (plain embeddings,
    or the default alpha); without item_text.npy or item_attributes.npz, search and `within` were off
    with a misleading message; decreasing list offsets, a negative attribute id or 1-D embeddings
    loaded and then failed every request."""
    import numpy as np

    from gnn.artifact import TextIndex, load_artifact, save_artifact

    rng, U, I = np.random.default_rng(0), 4, 6
    kept = dict(user_embeddings=rng.normal(size=(U, 3)), item_embeddings=rng.normal(size=(I, 3)),
                ids={"user": [f"u{n}" for n in range(U)], "item": [f"i{n}" for n in range(I)], "item_title": [""] * I},
                train_indptr=np.array([0, 1, 2, 3, 4]), train_indices=np.array([0, 1, 2, 3]), config={}, metrics={},
                meta={"model": "lightgcn"},
                text_index=TextIndex(rng.normal(size=(I, 5)), {"model": "m", "pooling": "mean", "max_length": 8,
                                                              "query_template": "{}"}),
                item_attributes=(np.array([0, 1, 2, 2, 2, 2, 2]), np.array([0, 1]), ["genre:a", "genre:b"]))
    whole = save_artifact(tmp_path / "whole", **kept)
    load_artifact(whole)
    gfcf = train(planted_snapshot(num_users=40), tiny_cfg(model="gfcf", filter={"k": 4, "alpha": 0.0}),
                 tmp_path / "models", progress=False)
    load_artifact(gfcf)

    def without(art: Path, name: str) -> Path:
        copy = tmp_path / f"{art.name}-without-{name}"
        shutil.copytree(art, copy)
        (copy / name).unlink()
        return copy

    for copy, said in ((without(gfcf, "filter.npz"), "gfcf graph filter without its filter.npz or config.json"),
                       (without(gfcf, "config.json"), "gfcf graph filter without its filter.npz or config.json"),
                       (without(whole, "item_text.npy"), "names a text encoder, but item_text.npy is missing"),
                       (without(whole, "item_attributes.npz"), "names 2 attributes, but item_attributes.npz is missing")):
        with pytest.raises(ValueError, match=said):
            load_artifact(copy)
    # edited copies (save_artifact refuses such arrays itself)
    for name, arrays, said in (
            ("train_items.npz", {"indptr": np.array([0, 3, 1, 3, 4]), "indices": np.array([0, 1, 2, 3])},
             "train_items.npz is not a list"),
            ("item_attributes.npz", {"indptr": np.array([0, 1, 2, 2, 2, 2, 2]), "indices": np.array([0, -1])},
             "item_attributes.npz does not match"),
            ("embeddings.npz", {"user": rng.normal(size=U), "item": rng.normal(size=I)},
             "arrays of 1 and 1 dimensions, not 2")):
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(whole, bad)
        np.savez(bad / name, **arrays)
        with pytest.raises(ValueError, match=said):
            load_artifact(bad)
    for changed in ({"train_indptr": np.array([0, 3, 1, 3, 4])},  # nor written so
                    {"item_attributes": (np.array([0, 1, 2, 2, 2, 2, 2]), np.array([0, -1]), ["genre:a", "genre:b"])},
                    {"user_embeddings": rng.normal(size=U), "item_embeddings": rng.normal(size=I)}):
        with pytest.raises(ValueError):
            save_artifact(tmp_path / "refused", **{**kept, **changed})


def test_damaged_artifact_files_are_errors_that_name_the_file(tmp_path, capsys):
    """A cut or emptied embeddings.npz, an array missing from it, ids.json holding a list and bad JSON
    in meta.json gave BadZipFile, EOFError, KeyError and AttributeError tracebacks (or a JSON error
    naming no file) from `kgrec recommend`, `serve` and `writeback`: now one line naming the file."""
    import json

    import numpy as np

    from gnn.artifact import load_artifact
    from kgrec.cli import main

    _, good = _two_versions(tmp_path)
    whole = (good / "embeddings.npz").read_bytes()
    with np.load(good / "embeddings.npz") as z:
        renamed = {"users": z["user"], "item": z["item"]}

    def damaged(name: str, write) -> Path:
        copy = tmp_path / f"damaged-{len(list(tmp_path.glob('damaged-*')))}"
        shutil.copytree(good, copy)
        write(copy / name)
        return copy

    for name, write, said in (
            ("embeddings.npz", lambda f: f.write_bytes(whole[:300]), "embeddings.npz cannot be read"),
            ("embeddings.npz", lambda f: f.write_bytes(b""), "embeddings.npz cannot be read"),
            ("embeddings.npz", lambda f: np.savez(f, **renamed), "embeddings.npz cannot be read.*user"),
            ("ids.json", lambda f: f.write_text("[1, 2]"), "ids.json cannot be read.*not an object"),
            ("ids.json", lambda f: f.write_text(json.dumps({"user": 3, "item": []})), "ids.json does not hold lists"),
            ("meta.json", lambda f: f.write_text("{\n"), "meta.json cannot be read"),
            ("metrics.json", lambda f: f.write_text("null"), "metrics.json cannot be read")):
        copy = damaged(name, write)
        with pytest.raises(ValueError, match="is not a whole model artifact: " + said):
            load_artifact(copy)
        assert main(["recommend", "--model", str(copy), "u0"]) == 2
        assert "is not a whole model artifact" in capsys.readouterr().err


def test_a_live_model_checks_the_link_at_most_every_check_s(tmp_path):
    first, second = _two_versions(tmp_path)
    live = LiveModel(tmp_path / "current", check_s=3600)
    assert live.get().version == second.name
    publish(first, tmp_path)
    live.get()
    assert live._loader is None  # no load started: the link is not looked at again for an hour
    assert live.get().version == second.name
    assert LiveModel(first).get().version == first.name  # an artifact path, not a link: fixed


def test_prune_deletes_a_version_no_server_holds_out_of_the_way_of_one_starting(tmp_path, monkeypatch):
    """remove_unless_in_use keeps a held version; an unheld one is renamed away before it is
    deleted, so a server starting on it meanwhile finds no model rather than half of one (deleting
    in place could remove .in-use first, and a late server would hold a fresh one at once)."""
    from gnn.artifact import hold, remove_unless_in_use
    from kg import durable

    first, second = _two_versions(tmp_path)
    held = hold(second)
    assert not remove_unless_in_use(second) and (second / "ids.json").is_file()
    held.close()
    seen = []
    real_rmtree = shutil.rmtree

    def rmtree(path, ignore_errors=False):
        seen.append((Path(path).name, second.exists(), hold(second)))  # a server starting now
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(durable.shutil, "rmtree", rmtree)
    assert remove_unless_in_use(second)
    assert seen[0][0].startswith(f".removing-{second.name}-") and seen[0][1:] == (False, None)
    assert not second.exists() and not list(tmp_path.glob(".removing-*")) and first.is_dir()


def test_a_live_model_serves_the_version_it_holds_and_lets_go_of_one_that_fails(tmp_path, monkeypatch):
    """The link moving between the hold and the load does not leave another version served unheld;
    a first load that fails leaves nothing held."""
    import pytest

    from serving import live as live_module

    first, second = _two_versions(tmp_path)
    real_load = live_module.Recommender.load

    def load_after_a_publish(path, cfg=None):  # retrain publishes between the hold and the load
        publish(first, tmp_path)
        return real_load(path, cfg)

    monkeypatch.setattr(live_module.Recommender, "load", load_after_a_publish)
    live = LiveModel(tmp_path / "current", check_s=3600)
    assert live.get().version == second.name and in_use(second)
    live._held.close()
    monkeypatch.undo()
    (second / "ids.json").write_text("{not json")
    with pytest.raises(Exception):
        LiveModel(second)
    assert not in_use(second)



def test_a_version_the_link_left_while_it_loaded_is_not_swapped_in(tmp_path, monkeypatch):
    """Published and rolled back within one load: the version loaded is dropped (and let go of),
    the one the link names again keeps serving; a load of the version already served does nothing."""
    from serving import live as live_module

    first, second = _two_versions(tmp_path)
    live = LiveModel(tmp_path / "current", check_s=0)
    assert live.get().version == second.name
    real_load = live_module.Recommender.load

    def load_then_roll_back(path, cfg=None):
        model = real_load(path, cfg)
        publish(second, tmp_path)  # rolled back while `first` loaded
        return model

    monkeypatch.setattr(live_module.Recommender, "load", load_then_roll_back)
    publish(first, tmp_path)
    live.get()
    live.wait_for_reload(60)
    assert live.get().version == second.name and not in_use(first) and in_use(second)
    monkeypatch.setattr(live_module.Recommender, "load", lambda *a, **k: pytest.fail("loaded again"))
    live._loading.acquire()
    live._load(str(second.resolve()))  # a request that saw `second` before its swap: nothing to do
    assert live._loading.acquire(blocking=False)  # and the lock was let go
    live._loading.release()

def test_ids_holding_a_slash_are_served_and_a_nan_score_never_is(tmp_path):
    """Source ids may be paths or URLs; the HTTP routes take them whole, escaped or not. A broken
    (NaN) embedding row does not take the first place of every list."""
    import json

    import numpy as np

    artifact = train(planted_snapshot(num_users=40), tiny_cfg(epochs=1), tmp_path, progress=False)
    ids = json.loads((artifact / "ids.json").read_text())
    ids["user"][0], ids["item"][0] = "shop/u 0", "https://example.org/item/0"
    (artifact / "ids.json").write_text(json.dumps(ids))
    with np.load(artifact / "embeddings.npz") as z:
        emb = {k: z[k].copy() for k in z.files}
    emb["item"][1] = np.nan
    np.savez(artifact / "embeddings.npz", **emb)
    client = TestClient(create_app(tmp_path / "current"))
    for path in ("/recommend/shop/u 0", "/recommend/shop%2Fu%200"):
        got = client.get(path, params={"k": 5})
        assert got.status_code == 200 and len(got.json()["items"]) == 5, got.text
        assert all(r["score"] is not None for r in got.json()["items"])
        assert ids["item"][1] not in [r["item_id"] for r in got.json()["items"]]
    got = client.get("/similar/https://example.org/item/0", params={"k": 3})
    assert got.status_code == 200 and len(got.json()["items"]) == 3
    assert client.get("/recommend/no/such/user").status_code == 404
    assert client.post("/recommend/cold", json={"item_ids": ["https://example.org/item/0"], "k": 2}).status_code == 200


def test_a_lone_surrogate_in_a_request_is_a_422_not_a_500(tmp_path):
    """JSON's \\ud800 escape decodes to a string UTF-8 cannot write: echoed back (as an unknown id,
    or quoted by the validation error) it failed the answer with a 500."""
    train(planted_snapshot(num_users=40), tiny_cfg(epochs=1), tmp_path, progress=False)
    client = TestClient(create_app(tmp_path / "current", reload_check_s=0))
    body = '{"item_ids": ["i1", "\\ud800"], "k": 2}'
    answer = client.post("/recommend/cold", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "lone surrogate" in answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "item_ids", 1]
    assert client.post("/recommend/cold", json={"item_ids": ["i1", "nope"], "k": 2}).json()["unknown_item_ids"] == ["nope"]
    for bad in ('{"item_ids": ["i1"], "k": NaN}', '{"item_ids": ["i1"], "k": Infinity}', '{"item_ids": NaN}'):
        answer = client.post("/recommend/cold", content=bad, headers={"content-type": "application/json"})
        assert answer.status_code == 422, bad  # Python's parser takes them; the error quotes them
    # numeric ids, as Last.fm's are, sent as JSON numbers: the ids they spell (a float or a bool is no id)
    assert client.post("/recommend/cold", json={"item_ids": [1, "i1"], "k": 2}).json()["unknown_item_ids"] == ["1"]
    assert client.post("/recommend/cold", json={"item_ids": [1.5], "k": 2}).status_code == 422
    assert client.post("/recommend/cold", json={"item_ids": [True], "k": 2}).status_code == 422
    # more attributes than a list could hold every one of: refused, as a long exclude list is
    assert client.get("/recommend/u1", params={"within": [f"genre:{n}" for n in range(101)]}).status_code == 422


def test_serving_a_directory_without_a_model_says_so_and_marks_nothing(tmp_path, caplog):
    """`kgrec serve` before any training warned that it could not mark the model in use, then said
    there was none; any directory given to --model got an in-use mark."""
    with caplog.at_level(logging.WARNING):
        with pytest.raises(FileNotFoundError, match="is not a model artifact .no embeddings.npz.: run `kgrec train`"):
            LiveModel(tmp_path / "current")
        with pytest.raises(FileNotFoundError, match="is not a model artifact"):
            LiveModel(tmp_path)
    assert not caplog.records and list(tmp_path.iterdir()) == []
