"""A content-addressed on-disk cache of text vectors.

Layout under ``cache_dir``::

    <namespace digest>/namespace.txt         the encoder's cache namespace, for humans
    <namespace digest>/<shard>.vecs.npy      float32 (n, dim) vectors
    <namespace digest>/<shard>.keys.npy      uint8 (n, 32) sha256 keys, one per vector row

A key is ``sha256(namespace + "\\0" + normalised text)``; the namespace holds model id, weight
fingerprint, pooling and max length, so a different model or setting never hits old vectors, and
the autocast precision when there is one (``HFTextEncoder.cache_namespace``): float32 vectors and
bf16/fp16-autocast ones, which differ in about the third decimal, never share entries.
Opening a namespace stamps ``namespace.txt``'s modification time, its last use, which
:func:`prune_cache` reads to remove the namespaces of models no longer in use.
Shards are append-only and each file is written to a temporary name then ``os.replace``-d; the keys
file is written last and a shard counts only once both files are complete, so a run killed midway
loses at most the batch in flight and never leaves a corrupt cache. What such a run leaves (a
temporary file, a vectors file without its keys) is removed by the next cache opened once it is
an hour old, when no writer can still be finishing it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Sequence

import numpy as np

from encoders.base import EncoderError, TextEncoder, TextLike, check_finite, normalize_texts
from kg.durable import REMOVING_PREFIX, remove_tree, set_aside, write_synced

logger = logging.getLogger(__name__)

MAX_SHARDS = 64  # more are merged into one when the cache is opened
ORPHAN_AGE_S = 3600.0  # a killed writer's leftovers older than this are removed


class _ShardGone(Exception):
    """A shard an open was merging was merged away by another process meanwhile."""


KEY = np.dtype("V32")  # a sha256 key as one numpy scalar: sortable and searchable as 32 bytes


def _as_keys(keys: Sequence[bytes]) -> np.ndarray:
    """(n,) KEY array of 32-byte keys."""
    return np.frombuffer(b"".join(keys), dtype=KEY) if len(keys) else np.empty(0, KEY)


def _prefix(keys: np.ndarray) -> np.ndarray:
    """(n,) uint64: the first 8 bytes of each KEY, big-endian, so their order is the keys' order."""
    return np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 32)[:, :8].copy().view(">u8").ravel() \
        .astype(np.uint64)


def _atomic_save(path: Path, array: np.ndarray | Callable[[IO[bytes]], object]) -> None:
    """Write an array (or whatever ``write(file)`` writes) to ``path`` by way of a synced temporary."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_synced(tmp, array if callable(array) else lambda fh: np.save(fh, array))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # a read-only filesystem refuses even a missing file's unlink
            tmp.unlink(missing_ok=True)


class VectorCache:
    """Key -> vector store for one encoder namespace (see module docstring).

    The keys on disk are indexed in sorted numpy arrays (52 bytes a key, searched with
    ``np.searchsorted`` on their first 8 bytes); the vectors stay in their memory-mapped shards.
    Only the keys this process adds are held in a dict.

    Args:
        cache_dir: root directory of the cache (shared by all namespaces).
        namespace: the encoder's :attr:`~encoders.base.TextEncoder.cache_namespace`.
        dim: vector dimension.
    """

    def __init__(self, cache_dir: str | Path, namespace: str, dim: int) -> None:
        self.namespace = namespace
        self.dim = int(dim)
        self.dir = Path(cache_dir) / hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:24]
        ns_file = self.dir / "namespace.txt"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not ns_file.exists():
                ns_file.write_text(namespace + "\n", encoding="utf-8")
        except OSError as e:
            raise EncoderError(f"cannot use the text cache at {cache_dir} ([encoder] cache_dir): {e}") from e
        with contextlib.suppress(OSError):  # the last use, for prune_cache; a read-only cache still reads
            os.utime(ns_file)
        # a shard's vectors: memory-mapped, or in memory (written by this process, or past
        # MAX_SHARDS when they cannot be merged); None only while an open merges them
        self._vecs: dict[str, np.ndarray | None] = {}
        self._added: dict[bytes, tuple[str, int]] = {}  # keys put by this process, beyond the index below
        self._remove_orphans()
        self._load_index()

    def _remove_orphans(self, min_age_s: float = ORPHAN_AGE_S) -> None:
        """Delete temporary files and keyless vectors files that killed writers left behind, and
        keys files whose vectors are gone (kgrec never leaves those: a partial copy of the cache)."""
        now = time.time()
        orphans = list(self.dir.glob(".*.tmp")) + [
            v for v in self.dir.glob("*.vecs.npy") if not v.with_name(v.name.replace(".vecs.", ".keys.")).exists()]
        orphans += [k for k in self.dir.glob("*.keys.npy") if not k.with_name(k.name.replace(".keys.", ".vecs.")).exists()]
        for path in orphans:
            try:
                if now - path.stat().st_mtime >= min_age_s:
                    path.unlink()
                    logger.info("removed %s, left by an interrupted cache write", path)
            except OSError:  # gone already, or not ours to remove
                pass

    def _load_index(self, attempts: int = 4) -> None:
        """Index the shards on disk (merging them past MAX_SHARDS); read again, ``attempts`` times
        in all, while another process's merge removes shards under this one.

        Raises:
            EncoderError: the shards kept changing through every attempt.
        """
        try:
            self._read_shards()
        except _ShardGone:
            self._vecs.clear()
            if attempts <= 1:
                raise EncoderError(f"the text cache {self.dir} kept changing under this process (other "
                                   f"processes merging it): open it again") from None
            self._load_index(attempts - 1)

    def _read_shards(self) -> None:
        files = sorted(self.dir.glob("*.keys.npy"))
        kept_open = len(files) <= MAX_SHARDS
        names: list[str] = []
        parts: list[np.ndarray] = []
        for keys_file in files:
            shard = keys_file.name[: -len(".keys.npy")]
            vecs_file = self.dir / f"{shard}.vecs.npy"
            try:
                keys = np.load(keys_file)
                vecs = np.load(vecs_file, mmap_mode="r")
            except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
                if getattr(e, "errno", None) in (errno.EMFILE, errno.ENFILE):  # not the shard's fault
                    raise
                # merged away by a compaction meanwhile, which removes the keys first; keys whose
                # vectors are gone (a partial copy of the cache) are skipped below
                if getattr(e, "errno", None) == errno.ENOENT and not keys_file.exists():
                    raise _ShardGone(shard) from e
                logger.warning("skipping unreadable cache shard %s: %s", keys_file, e)
                continue
            if keys.ndim != 2 or keys.shape[1:] != (32,) or keys.dtype != np.uint8 \
                    or vecs.shape != (keys.shape[0], self.dim):
                logger.warning("skipping cache shard %s: shape %s does not match %s keys of dim %d",
                               shard, vecs.shape, keys.shape[:1], self.dim)
                continue
            self._vecs[shard] = vecs if kept_open else None
            del vecs  # its map (and open file) goes here unless kept
            names.append(shard)
            parts.append(np.ascontiguousarray(keys).view(KEY).ravel())
        self._set_index(names, parts)
        if not kept_open:
            self._merge_on_open()
        logger.debug("text cache %s: %d vectors in %d shards", self.dir, len(self._keys), len(self._vecs))

    def _merge_on_open(self) -> None:
        """Past MAX_SHARDS (every run that encodes new texts adds one, and each map holds a file
        open): merge them into one, mapping each shard only while it is read. Where the merge
        cannot be written (a full or read-only disk) every vector is read into memory for this run
        instead.

        Raises:
            _ShardGone: another process merged the shards away meanwhile (the caller reads again).
        """
        logger.info("text cache %s: merging %d shards", self.dir, len(self._vecs))
        self.compact()
        for shard, vecs in self._vecs.items():
            if vecs is None:  # not merged: read in
                self._vecs[shard] = self._shard_vectors(shard, mmap_mode=None)

    def _shard_vectors(self, shard: str, mmap_mode: str | None) -> np.ndarray:
        """A shard's vectors file, mapped (``"r"``) or read in.

        Raises:
            _ShardGone: another process merged it away since the index was read.
        """
        try:
            return np.load(self.dir / f"{shard}.vecs.npy", mmap_mode=mmap_mode)
        except FileNotFoundError as e:
            raise _ShardGone(shard) from e

    def _set_index(self, names: list[str], parts: list[np.ndarray]) -> None:
        """Index the shards ``names`` holding the keys ``parts``: sorted by their first 8 bytes
        (as an integer, which sorts and searches far faster than 32-byte values), each key once (a
        key that two writers cached is found in either shard)."""
        self._names = names
        keys = np.concatenate(parts) if parts else np.empty(0, KEY)
        shard_of = np.repeat(np.arange(len(parts), dtype=np.int32), [len(k) for k in parts])
        rows = np.concatenate([np.arange(len(k), dtype=np.int64) for k in parts]) if parts else np.empty(0, np.int64)
        del parts
        prefix = _prefix(keys)
        order = np.argsort(prefix, kind="stable")
        keys, prefix, shard_of, rows = keys[order], prefix[order], shard_of[order], rows[order]
        del order
        same = np.flatnonzero(prefix[1:] == prefix[:-1])  # rare, but for keys two writers cached
        if len(same):  # within a run of one prefix, sorted by the whole key, so copies of a key meet
            tied = np.union1d(same, same + 1)
            by_key = np.argsort(keys[tied], kind="stable")
            by_key = by_key[np.argsort(prefix[tied][by_key], kind="stable")]
            keys[tied], shard_of[tied], rows[tied] = keys[tied][by_key], shard_of[tied][by_key], rows[tied][by_key]
        repeated = same[keys[same + 1] == keys[same]] + 1
        if len(repeated):
            keep = np.ones(len(keys), bool)
            keep[repeated] = False
            keys, prefix, shard_of, rows = keys[keep], prefix[keep], shard_of[keep], rows[keep]
        self._keys, self._prefix, self._shard_of, self._row = keys, prefix, shard_of, rows

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """(n,) positions of KEY values in the index, -1 where absent."""
        n = len(self._keys)
        if n == 0:
            return np.full(len(keys), -1, np.int64)
        wanted = _prefix(keys)
        order = np.argsort(wanted)  # sorted queries search in cache order: 4-6 times faster than as given
        pos = np.empty(len(keys), np.int64)
        pos[order] = np.minimum(np.searchsorted(self._prefix, wanted[order]), n - 1)
        hit = self._keys[pos] == keys
        found = np.where(hit, pos, -1)
        for i in np.flatnonzero(~hit & (self._prefix[pos] == wanted)):  # another key shares the 8 bytes
            j = pos[i] + 1
            while j < n and self._prefix[j] == wanted[i]:
                if self._keys[j] == keys[i]:
                    found[i] = j
                    break
                j += 1
        return found

    def key(self, text: str) -> bytes:
        """The 32-byte key of a normalised text."""
        return hashlib.sha256(f"{self.namespace}\0{text}".encode("utf-8")).digest()

    def __len__(self) -> int:
        return len(self._keys) + len(self._added)

    @property
    def shards(self) -> int:
        """Shard files in use (each keeps a file descriptor open through its memory map)."""
        return len(self._vecs)

    def __contains__(self, key: bytes) -> bool:
        return bool(self.contains_many([key])[0])

    def contains_many(self, keys: Sequence[bytes]) -> np.ndarray:
        """(len(keys),) bool: which keys are cached."""
        found = self._find(_as_keys(keys)) >= 0
        if self._added:
            found |= np.fromiter((k in self._added for k in keys), bool, len(keys))
        return found

    def get_many(self, keys: Sequence[bytes]) -> np.ndarray:
        """Vectors of keys that are all present, shape (len(keys), dim).

        Raises:
            KeyError: a key is not cached.
        """
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        pos = self._find(_as_keys(keys))
        by_shard: dict[str, tuple[list[int], list[int]]] = {}
        for i in np.flatnonzero(pos < 0):
            shard, row = self._added[keys[i]]
            at, rows = by_shard.setdefault(shard, ([], []))
            at.append(int(i))
            rows.append(row)
        for shard, (at, rows) in by_shard.items():
            out[at] = self._vecs[shard][rows]  # this process's: in memory, or mapped
        indexed = np.flatnonzero(pos >= 0)
        shard_of, rows = self._shard_of[pos[indexed]], self._row[pos[indexed]]
        for s in np.unique(shard_of):
            mine = shard_of == s
            out[indexed[mine]] = self._vecs[self._names[s]][rows[mine]]
        return out

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> bool:
        """Append one shard holding ``vectors`` under ``keys`` (written atomically). Returns whether
        it reached the disk: a full or read-only cache directory costs a warning, and the vectors
        are kept for this process only, never the encoding already done."""
        if len(keys) == 0:
            return True
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"vectors of shape {vectors.shape} for {len(keys)} keys of dim {self.dim}")
        shard = uuid.uuid4().hex
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        written = True
        try:
            _atomic_save(self.dir / f"{shard}.vecs.npy", vectors)
            _atomic_save(self.dir / f"{shard}.keys.npy", key_arr)  # keys last: a shard without them is ignored
        except OSError as exc:
            logger.warning("cannot write to the text cache %s (%s): %d vectors are kept for this run only",
                           self.dir, exc, len(keys))
            with contextlib.suppress(OSError):
                (self.dir / f"{shard}.vecs.npy").unlink(missing_ok=True)
            written = False
        self._vecs[shard] = vectors
        for row, (k, indexed) in enumerate(zip(keys, self._find(_as_keys(keys)) >= 0)):
            if not indexed:
                self._added[k] = (shard, row)
        return written

    def compact(self) -> int:
        """Merge all shards into one (atomically), returning the number of vectors kept. The merged
        vectors are written shard by shard, so it holds at most one shard's in memory."""
        if len(self._vecs) <= 1:
            return len(self)
        # (shard, its rows, their keys) for every key, each shard's rows in file order
        by_shard: dict[str, tuple[list[int], list[bytes]]] = {}
        for k, (shard, row) in self._added.items():
            rows, ks = by_shard.setdefault(shard, ([], []))
            rows.append(row)
            ks.append(k)
        sources = [(self._names[s], self._row[mine], self._keys[mine])
                   for s, mine in ((s, self._shard_of == s) for s in range(len(self._names)))]
        sources += [(shard, np.asarray(rows, np.int64), _as_keys(ks)) for shard, (rows, ks) in by_shard.items()]
        sources = [(shard, rows[order], keys[order])
                   for shard, rows, keys in sources for order in [np.argsort(rows, kind="stable")]]
        keys = np.concatenate([k for _, _, k in sources])
        total = len(keys)

        def write_vectors(fh: IO[bytes]) -> None:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                     "shape": (total, self.dim)})
            for shard, rows, _ in sources:  # one shard mapped at a time (past MAX_SHARDS, on open)
                vecs = self._vecs[shard]
                if vecs is None:  # a shard gone meanwhile is no error of this write: _ShardGone, not OSError
                    vecs = self._shard_vectors(shard, mmap_mode="r")
                for start in range(0, len(rows), 65536):
                    fh.write(np.ascontiguousarray(vecs[rows[start:start + 65536]], dtype=np.float32).tobytes())
                del vecs

        merged = uuid.uuid4().hex
        try:
            _atomic_save(self.dir / f"{merged}.vecs.npy", write_vectors)
            _atomic_save(self.dir / f"{merged}.keys.npy", keys.view(np.uint8).reshape(-1, 32))
        except OSError as exc:  # the old shards stay, on disk and in memory
            logger.warning("cannot merge the text cache %s (%s): its %d shards stay", self.dir, exc, len(self._vecs))
            with contextlib.suppress(OSError):
                (self.dir / f"{merged}.vecs.npy").unlink(missing_ok=True)
            return total
        old = list(self._vecs)
        self._vecs = {merged: np.load(self.dir / f"{merged}.vecs.npy", mmap_mode="r")}
        self._added = {}
        self._set_index([merged], [keys])
        for shard in old:
            for suffix in (".keys.npy", ".vecs.npy"):  # keys first: a half-removed shard is ignored
                with contextlib.suppress(OSError):
                    (self.dir / f"{shard}{suffix}").unlink(missing_ok=True)
        return total


_NAMESPACE_DIR = re.compile(r"[0-9a-f]{24}")


@dataclass(frozen=True)
class CachedNamespace:
    """One encoder namespace of a text cache, as :func:`cached_namespaces` finds it."""

    path: Path
    namespace: str  # model id, weight fingerprint, pooling, max length
    vectors: int
    bytes: int
    last_used: float  # seconds since the epoch: the latest open, or write, of the namespace


def cached_namespaces(cache_dir: str | Path) -> list[CachedNamespace]:
    """The namespaces under a text cache's root, least recently used first. Only directories that
    :class:`VectorCache` made (a 24-hex-digit name holding ``namespace.txt``) count."""
    found = []
    root = Path(cache_dir)
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        ns_file = d / "namespace.txt"
        if not (_NAMESPACE_DIR.fullmatch(d.name) and d.is_dir() and ns_file.is_file()):
            continue
        vectors, size, last_used = 0, 0, 0.0
        try:
            namespace = ns_file.read_text(encoding="utf-8", errors="replace").strip()
            files = list(d.iterdir())
        except OSError:  # pruned meanwhile
            continue
        for f in files:
            with contextlib.suppress(OSError, ValueError, EOFError):  # a compaction may remove a shard meanwhile; an empty file
                st = f.stat()
                size, last_used = size + st.st_size, max(last_used, st.st_mtime)
                if f.name.endswith(".keys.npy"):
                    vectors += int(np.load(f, mmap_mode="r").shape[0])
        found.append(CachedNamespace(d, namespace, vectors, size, last_used))
    return sorted(found, key=lambda n: n.last_used)


def prune_cache(cache_dir: str | Path, unused_days: float, dry_run: bool = False) -> list[CachedNamespace]:
    """Remove the namespaces of a text cache not opened or written for ``unused_days`` days (those
    of models, weights or settings no longer in use), returning those removed (with ``dry_run``,
    those that would be). A run that opens one while it is being removed keeps its vectors for that
    run only, with a warning. One that cannot be removed whole (a file it may not delete) is
    logged and left under ``.removing-*`` (:func:`kg.durable.set_aside`), which the next prune
    tries again.

    Raises:
        ValueError: ``unused_days`` below 0.
    """
    if unused_days < 0:
        raise ValueError(f"unused days must be >= 0, got {unused_days}")
    cutoff = time.time() - unused_days * 86400
    old = [n for n in cached_namespaces(cache_dir) if n.last_used < cutoff]
    if dry_run:
        return old
    for left in Path(cache_dir).glob(f"{REMOVING_PREFIX}*"):  # what an earlier prune could not finish
        remove_tree(left)  # (or one running now deletes: both then finish it)
    removed = []
    for n in old:
        # set aside first: a writer's next shard then fails (kept for its run, with a warning)
        # instead of landing in a directory being deleted
        try:
            doomed = set_aside(n.path)
        except FileNotFoundError:  # another prune took it
            continue
        except OSError as e:  # a cache root this user may not change
            logger.warning("could not remove the text cache namespace %s: %s", n.path, e)
            continue
        if _used_since(doomed, cutoff):  # opened between the listing and the rename: put back
            with contextlib.suppress(OSError):  # unless a run made the name anew meanwhile
                doomed.rename(n.path)
                continue
        if remove_tree(doomed):
            removed.append(n)
            logger.info("removed the text cache namespace %s (%s)", n.path, n.namespace)
    return removed


def _used_since(namespace_dir: Path, cutoff: float) -> bool:
    """Whether a namespace was opened (its ``namespace.txt`` stamped) at or after ``cutoff``."""
    try:
        return (namespace_dir / "namespace.txt").stat().st_mtime >= cutoff
    except OSError:
        return False


class CachedEncoder(TextEncoder):
    """Wrap any :class:`~encoders.base.TextEncoder` with the on-disk :class:`VectorCache`.

    Only texts whose (normalised) content is not cached are passed to the wrapped encoder, in
    chunks of ``flush_every`` that are each written to disk before the next, so an interrupted run
    keeps its progress. ``hits`` and ``misses`` count texts served from cache and encoded.

    Args:
        encoder: the encoder to wrap.
        cache_dir: root directory of the cache.
        flush_every: texts encoded between two shard writes.
    """

    def __init__(self, encoder: TextEncoder, cache_dir: str | Path, flush_every: int = 4096) -> None:
        if flush_every <= 0:
            raise ValueError("flush_every must be positive")
        self.encoder = encoder
        self.flush_every = int(flush_every)
        self.cache = VectorCache(cache_dir, encoder.cache_namespace, encoder.dim)  # merges past MAX_SHARDS
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def cache_namespace(self) -> str:
        return self.encoder.cache_namespace

    def reset_counters(self) -> None:
        """Set ``hits`` and ``misses`` back to zero."""
        self.hits = 0
        self.misses = 0

    def encode(self, texts: Sequence[TextLike]) -> np.ndarray:
        """Encode texts, reading cached vectors and encoding (then caching) only the rest."""
        clean = normalize_texts(texts)
        keys = [self.cache.key(t) for t in clean]
        missing: dict[bytes, str] = {}
        for i in np.flatnonzero(~self.cache.contains_many(keys)):
            missing.setdefault(keys[i], clean[i])
        self.misses += len(missing)
        self.hits += len(clean) - len(missing)
        new_keys = list(missing)
        for start in range(0, len(new_keys), self.flush_every):
            chunk = new_keys[start:start + self.flush_every]
            # never cached: a cached NaN would be served to every later run
            vectors = check_finite(self.encoder.encode([missing[k] for k in chunk]), "; nothing of them was cached")
            self.cache.put_many(chunk, vectors)
        if new_keys:
            logger.info("text cache: %d cached, %d encoded", len(clean) - len(new_keys), len(new_keys))
        if not clean:
            return np.empty((0, self.dim), dtype=np.float32)
        return self.cache.get_many(keys)

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, cache_dir={str(self.cache.dir)!r})"
