"""Model artifacts: a versioned directory of plain files that ``serving`` loads.

Layout of ``<out_dir>/<version>/``::

    embeddings.npz     user (U, d) float32, item (I, d) float32; score(u, i) = user[u] · item[i]
    ids.json           {"user": [external ids], "item": [external ids]} (row = internal id)
    train_items.npz    CSR of each user's training positives: indptr (U+1,), indices (nnz,)
    seen_items.npz     the same for every interaction in the snapshot (train, valid and test): what
                       serving leaves out of a user's results (older artifacts lack it: train only)
    config.json        the TrainConfig the model was trained with
    metrics.json       {"test": {...final metrics}, "best_epoch": n, "history": [{epoch row}, ...]}
    meta.json          {version, model, created, code_version, snapshot}
    curve.png          training curve
    filter.npz         graph-filter models only (gfcf, bspm): ``vt`` (k, I), the low-pass basis; serving
                       scores with the whole filter and the embeddings are its low-pass factors
    item_attributes.npz  optional CSR (I, A) of each item's attributes and knowledge-graph entities
                       (the snapshot's item->entity relations, and one knowledge-graph triple
                       further: ``gnn.train.item_attributes``): indptr, indices; ``ids.json["attribute"]``
                       names the A entities. Serving ranks within them (``Recommender.recommend(within=)``)
    item_text.npy      optional (I, T) float16 unit-length text vectors of the items, for free-text
                       search (``serving.search``); ``meta.json["text_encoder"]`` names the encoder
                       setting that made them, so a query is encoded the same way

``<out_dir>/current`` is a symlink to the served version, swapped atomically by :func:`publish`.
A server holds a shared OS lock on ``<version>/.in-use`` while it serves that version
(:func:`hold`), so ``kgrec retrain``'s prune leaves it alone (:func:`in_use`).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from kg.durable import remove_tree, set_aside, sync_dir, sync_files

logger = logging.getLogger(__name__)

IN_USE_FILE = ".in-use"
ARTIFACT_FILES = ("embeddings.npz", "ids.json", "train_items.npz", "seen_items.npz", "config.json",
                  "metrics.json", "meta.json", "curve.png")


@dataclass(frozen=True)
class TextIndex:
    """Item text vectors to keep in an artifact for free-text search, and how they were encoded.

    Attributes:
        vectors: (I, T) text vectors aligned with the items (any scale: stored unit-length).
        encoder: the encoder setting a query must be encoded with: ``model``, ``pooling``,
            ``max_length`` and ``query_template`` (an ``EncoderConfig``'s fields).
    """

    vectors: np.ndarray
    encoder: dict[str, Any]


@dataclass
class Artifact:
    """A loaded model artifact."""

    path: Path
    user_embeddings: np.ndarray
    item_embeddings: np.ndarray
    ids: dict[str, list[str]]
    train_indptr: np.ndarray
    train_indices: np.ndarray
    seen_indptr: np.ndarray  # every snapshot interaction (the training ones in older artifacts)
    seen_indices: np.ndarray
    config: dict[str, Any]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    filter_state: dict[str, np.ndarray] | None = None
    item_text: np.ndarray | None = None  # (I, T) unit-length float16 text vectors, when written
    # (indptr, indices) CSR of each item's attributes, columns named by ids["attribute"], when written
    item_attributes: tuple[np.ndarray, np.ndarray] | None = None

    def train_items(self, user: int) -> np.ndarray:
        """Internal item ids the user interacted with in training."""
        return self.train_indices[self.train_indptr[user]:self.train_indptr[user + 1]]

    def seen_items(self, user: int) -> np.ndarray:
        """Internal item ids of every interaction of the user in the snapshot (train if not recorded)."""
        return self.seen_indices[self.seen_indptr[user]:self.seen_indptr[user + 1]]


def save_artifact(path: str | Path, *, user_embeddings: np.ndarray, item_embeddings: np.ndarray,
                  ids: dict[str, list[str]], train_indptr: np.ndarray, train_indices: np.ndarray,
                  config: dict[str, Any], metrics: dict[str, Any], meta: dict[str, Any],
                  curve_png: bytes | Path | None = None, filter_state: dict[str, np.ndarray] | None = None,
                  seen_indptr: np.ndarray | None = None, seen_indices: np.ndarray | None = None,
                  text_index: TextIndex | None = None,
                  item_attributes: tuple[np.ndarray, np.ndarray, list[str]] | None = None) -> Path:
    """Write an artifact into ``path`` (a directory, created; normally a temp dir renamed later).

    ``seen_indptr``/``seen_indices`` (CSR, every interaction of each user, training ones included)
    are what serving excludes; without them it excludes the training items only. ``text_index``
    adds ``item_text.npy`` and ``meta["text_encoder"]`` for free-text search. ``item_attributes``
    (indptr, indices, attribute ids: a CSR of each item's attributes) adds ``item_attributes.npz``.

    Raises:
        ValueError: shapes disagree with ids.
    """
    path = Path(path)
    ue = np.ascontiguousarray(user_embeddings, dtype=np.float32)
    ie = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    if ue.ndim != 2 or ie.ndim != 2 or ue.shape[0] != len(ids["user"]) or ie.shape[0] != len(ids["item"]) \
            or ue.shape[1] != ie.shape[1]:
        raise ValueError(f"embedding shapes {ue.shape}/{ie.shape} do not match ids "
                         f"({len(ids['user'])} users, {len(ids['item'])} items)")
    if not _is_lists(np.asarray(train_indptr), np.asarray(train_indices), ue.shape[0], ie.shape[0]):
        raise ValueError("train_indptr/train_indices must be a CSR list of items for each user")
    if (seen_indptr is None) != (seen_indices is None):
        raise ValueError("give seen_indptr and seen_indices together")
    if seen_indptr is not None and not _is_lists(np.asarray(seen_indptr), np.asarray(seen_indices), ue.shape[0],
                                                 ie.shape[0]):
        raise ValueError("seen_indptr/seen_indices must be a CSR list of items for each user")
    if text_index is not None:
        if text_index.vectors.ndim != 2 or text_index.vectors.shape[0] != ie.shape[0]:
            raise ValueError(f"item text vectors {text_index.vectors.shape} do not match {ie.shape[0]} items")
        meta = {**meta, "text_encoder": dict(text_index.encoder)}
    ids = {k: list(v) for k, v in ids.items()}  # user, item, item_title[, attribute]
    if item_attributes is not None:
        attr_indptr, attr_indices, attr_ids = item_attributes
        if not _is_lists(np.asarray(attr_indptr), np.asarray(attr_indices), ie.shape[0], len(attr_ids)):
            raise ValueError("item_attributes must be a CSR with one row per item and a column per attribute id")
        ids["attribute"] = list(attr_ids)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "embeddings.npz", user=ue, item=ie)
    (path / "ids.json").write_text(json.dumps(ids))
    np.savez(path / "train_items.npz", indptr=np.asarray(train_indptr, dtype=np.int64),
             indices=np.asarray(train_indices, dtype=np.int64))
    if seen_indptr is not None:
        np.savez(path / "seen_items.npz", indptr=np.asarray(seen_indptr, dtype=np.int64),
                 indices=np.asarray(seen_indices, dtype=np.int64))
    (path / "config.json").write_text(json.dumps(config, indent=2, default=str))
    (path / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (path / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    if isinstance(curve_png, Path):
        shutil.copyfile(curve_png, path / "curve.png")
    elif curve_png is not None:
        (path / "curve.png").write_bytes(curve_png)
    if filter_state is not None:
        np.savez(path / "filter.npz", **filter_state)
    if item_attributes is not None:
        np.savez(path / "item_attributes.npz", indptr=np.asarray(attr_indptr, dtype=np.int64),
                 indices=np.asarray(attr_indices, dtype=np.int64))
    if text_index is not None:
        vectors = np.asarray(text_index.vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.save(path / "item_text.npy", (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float16))
    return path


def check_artifact(path: str | Path) -> Path:
    """``path`` resolved, when it holds a model artifact's required files.

    Raises:
        FileNotFoundError: one is missing.
    """
    path = Path(path).resolve()
    for name in ("embeddings.npz", "ids.json", "train_items.npz", "meta.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a model artifact (no {name})")
    return path


def load_artifact(path: str | Path) -> Artifact:
    """Read an artifact directory (or the ``current`` symlink).

    Raises:
        FileNotFoundError: a required file is missing.
        ValueError: a file cannot be read (cut short, damaged), or its files disagree (ids and
            embedding rows, say: a copy cut short or edited); the message names the file.
    """
    path = check_artifact(path)

    def arrays(name: str, *keys: str) -> tuple[np.ndarray, ...] | None:
        if not (path / name).is_file():
            return None
        with _named(path / name), np.load(path / name) as z:
            return tuple(z[k] for k in keys)

    def obj(name: str) -> dict[str, Any]:
        if not (path / name).is_file():
            return {}
        with _named(path / name):
            value = json.loads((path / name).read_text())
            if not isinstance(value, dict):
                raise ValueError(f"a JSON {type(value).__name__}, not an object")
            return value

    ue, ie = arrays("embeddings.npz", "user", "item")
    indptr, indices = arrays("train_items.npz", "indptr", "indices")
    # an artifact from before seen_items.npz: training only
    seen_indptr, seen_indices = arrays("seen_items.npz", "indptr", "indices") or (indptr, indices)
    with _named(path / "filter.npz"):
        filter_state = load_filter_state(path)
    item_text = None
    if (path / "item_text.npy").is_file():
        with _named(path / "item_text.npy"):
            item_text = np.load(path / "item_text.npy")
    art = Artifact(path=path, user_embeddings=ue, item_embeddings=ie, ids=obj("ids.json"),
                   train_indptr=indptr, train_indices=indices, config=obj("config.json"),
                   metrics=obj("metrics.json"), meta=obj("meta.json"), filter_state=filter_state,
                   seen_indptr=seen_indptr, seen_indices=seen_indices, item_text=item_text,
                   item_attributes=arrays("item_attributes.npz", "indptr", "indices"))
    problem = _inconsistency(art)
    if problem:  # a server keeps the version it serves rather than swap in one that fails per request
        raise ValueError(f"{path} is not a whole model artifact: {problem}")
    return art


@contextmanager
def _named(f: Path) -> Iterator[None]:
    """Turn an error reading ``f`` (cut short, damaged, an array missing) into a ValueError that names it."""
    try:
        yield
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{f.parent} is not a whole model artifact: {f.name} cannot be read "
                         f"({type(e).__name__}: {e})") from e


def _inconsistency(art: Artifact) -> str | None:
    """What in an artifact's files disagrees (ids against embedding rows, interaction lists against
    both), or None."""
    ids = art.ids
    if not all(isinstance(ids.get(k), list) for k in ("user", "item")) or \
            not all(isinstance(ids.get(k, []), list) for k in ("item_title", "attribute")):
        return "ids.json does not hold lists of user and item ids (user, item, item_title, attribute)"
    U, I = len(ids.get("user", [])), len(ids.get("item", []))
    if art.user_embeddings.ndim != 2 or art.item_embeddings.ndim != 2:
        return f"embeddings.npz holds arrays of {art.user_embeddings.ndim} and {art.item_embeddings.ndim} dimensions, not 2"
    if art.user_embeddings.shape[0] != U or art.item_embeddings.shape[0] != I:
        return (f"ids.json names {U} users and {I} items, embeddings.npz has {art.user_embeddings.shape[0]} and "
                f"{art.item_embeddings.shape[0]} rows")
    if art.user_embeddings.shape[1:] != art.item_embeddings.shape[1:]:
        return f"user and item embeddings differ in size: {art.user_embeddings.shape} and {art.item_embeddings.shape}"
    if "item_title" in ids and len(ids["item_title"]) != I:
        return f"ids.json has {len(ids['item_title'])} item titles for {I} items"
    for name, indptr, indices, rows, cols in (("train_items", art.train_indptr, art.train_indices, U, I),
                                              ("seen_items", art.seen_indptr, art.seen_indices, U, I)):
        if not _is_lists(indptr, indices, rows, cols):
            return f"{name}.npz is not a list of items for each of the {U} users"
    if art.item_attributes is not None and not _is_lists(*art.item_attributes, I, len(ids.get("attribute", []))):
        return f"item_attributes.npz does not match the {I} items and the attributes ids.json names"
    if art.item_attributes is None and ids.get("attribute"):
        return f"ids.json names {len(ids['attribute'])} attributes, but item_attributes.npz is missing"
    if art.item_text is not None and (art.item_text.ndim != 2 or art.item_text.shape[0] != I):
        return f"item_text.npy has shape {art.item_text.shape} for {I} items"
    if art.item_text is None and "text_encoder" in art.meta:
        return "meta.json names a text encoder, but item_text.npy is missing"
    if art.meta.get("scorer") and (art.filter_state is None or not (art.path / "config.json").is_file()):
        # a graph filter without its state or settings would score otherwise than it was trained to
        return f"a {art.meta['scorer']} graph filter without its filter.npz or config.json"
    return None


def _is_lists(indptr: np.ndarray, indices: np.ndarray, rows: int, cols: int) -> bool:
    """Whether ``(indptr, indices)`` is a CSR list of column ids below ``cols`` for ``rows`` rows."""
    return (indptr.ndim == 1 and len(indptr) == rows + 1 and indptr[0] == 0 and indptr[-1] == len(indices)
            and bool(np.all(np.diff(indptr) >= 0))
            and (len(indices) == 0 or 0 <= indices.min() <= indices.max() < cols))


def load_filter_state(path: str | Path) -> dict[str, np.ndarray] | None:
    """The arrays of ``filter.npz`` (graph-filter models), or None for embedding models."""
    f = Path(path) / "filter.npz"
    if not f.is_file():
        return None
    with np.load(f) as z:
        return {k: z[k] for k in z.files}


def publish(artifact_dir: str | Path, out_dir: str | Path, link_name: str = "current") -> Path:
    """Atomically point ``out_dir/<link_name>`` at ``artifact_dir``.

    A temporary symlink is created beside the target and moved over it with ``os.replace``
    (atomic on POSIX), so readers see either the old or the new version, never neither.

    Returns:
        The symlink path.

    Raises:
        FileNotFoundError: ``artifact_dir`` is not an artifact.
    """
    artifact_dir = Path(artifact_dir)
    out_dir = Path(out_dir)
    if not (artifact_dir / "embeddings.npz").is_file():
        raise FileNotFoundError(f"{artifact_dir} is not a model artifact")
    link = out_dir / link_name
    tmp = out_dir / f".{link_name}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    # Relative target when the artifact sits in out_dir, so the tree can be moved as a whole (the
    # version's own name: `current` given as the artifact must not become a link to itself)
    resolved = artifact_dir.resolve()
    target = resolved.name if resolved.parent == out_dir.resolve() else str(resolved)
    sync_files(artifact_dir)  # on disk before anything points at it: a power loss never leaves `current` on empty files
    os.symlink(target, tmp)
    os.replace(tmp, link)
    sync_dir(out_dir)  # and the link's swap with it
    logger.info("published %s -> %s", link, target)
    return link


def hold(artifact_dir: str | Path) -> IO[bytes] | None:
    """Mark ``artifact_dir`` as in use by this process until the returned file is closed (or the
    process ends): a shared lock on its ``.in-use`` file, which any number of servers can hold.

    Returns None, with a warning, where the lock cannot be taken (a read-only directory): the
    version is served all the same, but prune cannot see that it is.
    """
    path = Path(artifact_dir) / IN_USE_FILE
    f = None
    try:
        f = open(path, "ab")
        fcntl.flock(f, fcntl.LOCK_SH)
    except OSError as exc:
        if f is not None:
            f.close()
        logger.warning("cannot mark %s as in use (%s): prune may delete it while it is served", artifact_dir, exc)
        return None
    return f


def in_use(artifact_dir: str | Path) -> bool:
    """Whether a process on this machine holds ``artifact_dir`` (:func:`hold`); a lock file this
    process may not open counts as held."""
    path = Path(artifact_dir) / IN_USE_FILE
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except FileNotFoundError:
        return False
    except OSError:  # another user's, say: cannot tell, so held
        return True
    return False


def remove_unless_in_use(artifact_dir: str | Path) -> bool:
    """Delete ``artifact_dir`` unless a server holds it (:func:`hold`); True when deleted.

    The exclusive lock is held while the directory is renamed out of the way (to
    ``.removing-<name>-<random>`` beside it, then deleted), so a server starting on this version
    meanwhile waits for it and then fails to load (no model there), rather than serve a half-deleted
    one: deleting in place could remove ``.in-use`` first, and a server coming then would make a
    fresh one and hold it at once.
    """
    artifact_dir = Path(artifact_dir)
    try:
        f = open(artifact_dir / IN_USE_FILE, "ab")  # created if missing: a late server waits on it
    except OSError:  # cannot tell whether it is held: kept
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        doomed = set_aside(artifact_dir)
    remove_tree(doomed)  # what a prune killed here leaves, the next one sweeps
    return True
