"""The ``encode`` stage: text embeddings for every item, query and entity of a snapshot."""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from encoders.base import TextEncoder
from encoders.cache import CachedEncoder
from encoders.texts import node_texts
from kg.durable import write_synced

logger = logging.getLogger(__name__)

EMBEDDINGS_FILE = "text_embeddings.npz"
META_FILE = "text_embeddings.json"
LOCK_FILE = ".encode.lock"


@contextmanager
def _encode_lock(snapshot_dir: Path, operation: int) -> Iterator[None]:
    """Hold the snapshot's ``.encode.lock`` (``fcntl.LOCK_SH`` or ``LOCK_EX``). Readers open it
    read-only, which a local flock needs no more than (a reader that made it must not lock a later
    encoder of the group out); the writer opens it for writing where it may (NFS's emulated flock
    takes an exclusive lock only on a file open for writing). Where it neither exists nor can be
    made (a read-only snapshot), nobody can be writing vectors there either: held without it."""
    path = snapshot_dir / LOCK_FILE
    modes = ([os.O_RDWR | os.O_CREAT] if operation == fcntl.LOCK_EX else []) + [os.O_RDONLY | os.O_CREAT, os.O_RDONLY]
    fd = None
    for mode in modes:
        try:
            fd = os.open(path, mode, 0o666)
            break
        except FileNotFoundError:
            break  # no lock file and none can be made: a read-only snapshot
        except OSError:
            continue  # not ours to write, or a read-only file system: the next, narrower mode
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


def embeddings_read_lock(snapshot_dir: str | Path) -> AbstractContextManager[None]:
    """Hold the snapshot's encode lock shared while a reader checks, loads and describes its text
    vectors: an :func:`encode_snapshot` of another model waits to swap its files in until the reader
    is done, so the vectors read are the ones the metadata read vouches for."""
    return _encode_lock(Path(snapshot_dir), fcntl.LOCK_SH)


def build_encoder(cfg: Any, show_progress: bool = True) -> TextEncoder:
    """The encoder described by an :class:`kgrec.config.EncoderConfig`.

    Args:
        cfg: encoder config (model, pooling, max_length, batch_size, device, dtype, cache_dir).
        show_progress: draw progress bars.

    Returns:
        An :class:`~encoders.hf.HFTextEncoder`, wrapped in a :class:`~encoders.cache.CachedEncoder`
        unless ``cfg.cache_dir`` is ``None``.
    """
    from encoders.hf import HFTextEncoder

    encoder: TextEncoder = HFTextEncoder(cfg.model, pooling=cfg.pooling, max_length=cfg.max_length,
                                         batch_size=cfg.batch_size, device=cfg.device, dtype=cfg.dtype,
                                         show_progress=show_progress)
    if cfg.cache_dir is not None:
        encoder = CachedEncoder(encoder, cfg.cache_dir)
    return encoder


DIGEST_VERSION = 2  # text_embeddings.json's "text_digest": 2, length-prefixed; absent: either


def _texts_digest(texts: list[str], version: int = DIGEST_VERSION) -> str:
    """SHA-256 of the texts in order, each after its length (a text may hold any character, NUL
    too); ``version`` 1, NUL after each text, is how older metadata (without ``text_digest``) reads."""
    h = hashlib.sha256()
    for t in texts:
        data = t.encode("utf-8", "surrogatepass")
        if version >= 2:
            h.update(len(data).to_bytes(8, "little"))
        h.update(data)
        if version < 2:
            h.update(b"\0")
    return h.hexdigest()


def encode_snapshot(snapshot_dir: str | Path, cfg: Any, encoder: TextEncoder | None = None) -> Path:
    """Encode a snapshot's node texts and write them beside its other arrays.

    Writes ``text_embeddings.npz`` (float32 arrays ``item``, ``query``, ``entity`` with rows
    aligned to the snapshot's ids) and ``text_embeddings.json`` (model id, dim, pooling, max
    length, counts, text digests) inside ``snapshot_dir``, each atomically.

    Args:
        snapshot_dir: a directory written by :meth:`kg.snapshot.Snapshot.save`.
        cfg: an :class:`kgrec.config.EncoderConfig`.
        encoder: an encoder to use instead of ``build_encoder(cfg)`` (lets callers reuse a loaded one).

    Returns:
        Path of the ``.npz`` file.

    Raises:
        FileNotFoundError: ``snapshot_dir`` is not a snapshot.
        encoders.base.EncoderError: the model cannot be loaded.
    """
    from kg.snapshot import Snapshot

    snapshot_dir = Path(snapshot_dir).resolve()  # through a `-latest` link: the vectors go beside the texts read
    snapshot = Snapshot.load(snapshot_dir)
    texts = node_texts(snapshot, cfg)
    if encoder is None:
        encoder = build_encoder(cfg)
    from encoders.hf import pooling_said, resolve_pooling

    pooling = resolve_pooling(cfg.model, cfg.pooling)  # `auto` made concrete: the meta records what queries use
    pooled_by = _namespace_part(encoder.cache_namespace, "pooling") or None
    if pooled_by not in (None, pooling):  # the meta would vouch for cfg's pooling, and queries use it
        said = pooling_said(cfg.pooling, pooling)
        raise ValueError(f"the encoder given pools by {pooled_by!r}, the config says {said}")
    truncates_at = _namespace_part(encoder.cache_namespace, "max_length")
    asked = getattr(encoder.encoder if isinstance(encoder, CachedEncoder) else encoder, "requested_max_length", None)
    if truncates_at and int(truncates_at) != cfg.max_length and asked != cfg.max_length:  # not the model's own cap
        raise ValueError(f"the encoder given truncates at {truncates_at} tokens, the config says {cfg.max_length}")
    if isinstance(encoder, CachedEncoder):
        encoder.reset_counters()  # this snapshot's hits and misses, not a reused encoder's total
    started = time.perf_counter()
    arrays = {kind: encoder.encode(values).astype(np.float32, copy=False) for kind, values in texts.items()}
    seconds = time.perf_counter() - started
    meta: dict[str, Any] = {
        "model_id": encoder.model_id,
        "dim": encoder.dim,
        "pooling": pooling,
        "max_length": cfg.max_length,
        "cache_namespace": encoder.cache_namespace,
        "counts": {kind: int(a.shape[0]) for kind, a in arrays.items()},
        "text_sha256": {kind: _texts_digest(values) for kind, values in texts.items()},
        "text_digest": DIGEST_VERSION,
        "templates": {"item": cfg.item_template, "query": cfg.query_template, "entity": cfg.entity_template},
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if isinstance(encoder, CachedEncoder):
        meta["cache"] = {"hits": encoder.hits, "misses": encoder.misses}
    npz_path = snapshot_dir / EMBEDDINGS_FILE
    tmp = snapshot_dir / f".{EMBEDDINGS_FILE}.{uuid.uuid4().hex}.tmp"
    meta_tmp = snapshot_dir / f".{META_FILE}.{uuid.uuid4().hex}.tmp"
    try:
        # on disk before they replace anything: no torn file after a power cut
        write_synced(tmp, lambda fh: np.savez(fh, **arrays))
        write_synced(meta_tmp, lambda fh: fh.write(json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8")))
        # one writer at a time, so two runs cannot leave one's vectors under the other's metadata
        with _encode_lock(snapshot_dir, fcntl.LOCK_EX):
            # the old metadata goes first: a run stopped between the two replaces leaves vectors that no
            # metadata vouches for (stale, encoded again), never new vectors under the old description
            (snapshot_dir / META_FILE).unlink(missing_ok=True)
            os.replace(tmp, npz_path)
            os.replace(meta_tmp, snapshot_dir / META_FILE)
    finally:  # a failed write (a full disk) leaves no hidden file behind
        tmp.unlink(missing_ok=True)
        meta_tmp.unlink(missing_ok=True)
    logger.info("encoded %s with %s (dim %d) in %.1fs: %s", snapshot_dir, encoder.model_id, encoder.dim,
                seconds, meta["counts"])
    return npz_path


def query_encoder_setting(snapshot_dir: str | Path, cfg: Any) -> dict[str, Any]:
    """How to encode a query so that it compares with the snapshot's item vectors: the model (a
    local path made absolute), pooling, max length and query template that ``text_embeddings.json``
    records (``cfg``'s where it does not), and ``encoded_with``, the encoder's cache namespace
    (model fingerprint included) for a later check."""
    meta_path = Path(snapshot_dir) / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    model = meta.get("model_id", cfg.model)
    local = Path(model).expanduser()
    if local.exists():  # so a server started in another directory finds it
        model = str(local.resolve())
    return {"model": model, "pooling": meta.get("pooling", cfg.pooling), "max_length": meta.get("max_length", cfg.max_length),
            "query_template": meta.get("templates", {}).get("query", cfg.query_template),
            "encoded_with": meta.get("cache_namespace")}


def same_weights(namespace: str, other: str) -> bool:
    """Whether two encoders' cache namespaces name the same model files, pooling and length,
    whatever the paths they were named by and the autocast precision they ran in (which moves a
    vector by about 1e-3, not to another space)."""
    def weights(ns: str) -> list[str]:
        return [part for part in ns.split("|")[1:] if not part.startswith("autocast=")]

    return weights(namespace) == weights(other)


def _namespace_part(namespace: str, key: str) -> str:
    """The ``<key>=`` part of an encoder's cache namespace, ``fp`` or ``pooling`` (``""`` when there is none)."""
    return next((part[len(key) + 1:] for part in namespace.split("|") if part.startswith(f"{key}=")), "")


def stale_embeddings_reason(snapshot_dir: str | Path, cfg: Any, snapshot: Any = None) -> str | None:
    """Why the snapshot's ``text_embeddings.npz`` does not match ``cfg`` (an ``EncoderConfig``) and
    the snapshot's texts, or None when it does (or was written before its meta recorded these).

    Compared: model, pooling, max length, templates and the digest of every text list.
    ``snapshot`` is the snapshot at ``snapshot_dir`` when the caller has it loaded already.
    """
    from kg.snapshot import Snapshot

    meta_path = Path(snapshot_dir) / META_FILE
    if not meta_path.is_file():
        return f"{META_FILE} is missing"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    from encoders.hf import expected_pooling, pooling_said

    pooling = expected_pooling(cfg.model, cfg.pooling, meta.get("pooling"))
    want = {"model_id": cfg.model, "pooling": pooling, "max_length": cfg.max_length,
            "templates": {"item": cfg.item_template, "query": cfg.query_template, "entity": cfg.entity_template}}
    for key, value in want.items():
        if key in meta and meta[key] != value:
            said = pooling_said(cfg.pooling, value) if key == "pooling" else repr(value)
            return f"encoded with {key} {meta[key]!r}, but the config says {said}"
    encoded_fp = _namespace_part(meta.get("cache_namespace", ""), "fp")
    from encoders.resolve import CONTENT_FP

    if encoded_fp.startswith(CONTENT_FP) or "@" in encoded_fp:  # a local model's contents, a hub model's commit;
        # an older fingerprint (times, or subdirectories too) cannot be compared
        from encoders.resolve import hub_revision, is_local, model_fingerprint, resolve_model

        resolved = resolve_model(cfg.model)
        if is_local(resolved) and model_fingerprint(resolved) != encoded_fp:  # the weights changed in place
            return f"encoded by model files with fingerprint {encoded_fp}, but {cfg.model!r} now has {model_fingerprint(resolved)}"
        revision = None if is_local(resolved) else hub_revision(resolved)
        if revision and model_fingerprint(resolved, revision) != encoded_fp:  # the hub cache moved on
            return f"encoded by {encoded_fp}, but the Hugging Face cache now holds {cfg.model!r} at {revision}"
    if "text_sha256" in meta:
        texts = node_texts(snapshot if snapshot is not None else Snapshot.load(snapshot_dir), cfg)
        versions = [int(meta["text_digest"])] if "text_digest" in meta else [1, 2]  # older: either form
        changed = [kind for kind, values in texts.items()
                   if meta["text_sha256"].get(kind) not in {_texts_digest(values, v) for v in versions}]
        if changed:
            return f"the snapshot's {', '.join(changed)} texts differ from those encoded"
    return None
