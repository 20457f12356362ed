"""Free-text search: items recalled by text similarity to a query, ranked for a user by the model.

A model artifact may keep its items' text vectors (``item_text.npy``, written by ``kgrec train``
from the snapshot's ``text_embeddings.npz``) and the encoder setting that made them. A query is
encoded the same way (``[encoder] query_template``, the same model, pooling and length), so its
cosine similarity to each item's text is its relevance. Without a user the most relevant items are
the answer. For a user, the ``candidates`` most relevant items they have not interacted with are
recalled and ranked by reciprocal rank fusion of two orders: relevance, and the user's model scores
(``1/(60 + r_text) + 1/(60 + r_model)``, Cormack et al. 2009). The encoder is loaded on the first
query (on the CPU unless another device is given: one short text is quicker there than a copy to a
GPU that may be training). Catalogues with at least ``[serving] search_ann_min_items`` items with
text recall the most relevant through a FAISS index of the text vectors (:mod:`serving.recall`,
``search_nprobe`` cells per query), which ``kgrec train`` keeps in the artifact
(``item_text_index.faiss``); smaller ones are scored exactly.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .recall import ItemIndex, saved_or_new_index, top_k, uses_index

logger = logging.getLogger(__name__)

RRF_K = 60  # reciprocal rank fusion's constant, the paper's value
LOAD_RETRY_S = 60.0  # after a failed encoder load, queries fail at once for this long before it is tried again
LOAD_WAIT_S = 10.0  # how long a query waits for another's load of the encoder before a 503
TEXT_INDEX_FILE = "item_text_index.faiss"


class SearchUnavailableError(RuntimeError):
    """The model artifact holds no item text vectors to search."""


class TextSearch:
    """Relevance of every item to a free-text query, from the items' stored text vectors."""

    def __init__(self, item_text: np.ndarray, encoder: dict[str, Any], device: str = "cpu") -> None:
        self.item_text = torch.from_numpy(np.ascontiguousarray(item_text, dtype=np.float32))  # (I, T), unit rows
        self.setting = dict(encoder)
        self._textless = torch.from_numpy(~with_text(item_text))  # these match no query
        self.index: ItemIndex | None = None  # recall through FAISS for large catalogues (use_index)
        self.device = device
        self._encoder = None
        self._unusable: SearchUnavailableError | None = None
        self._failed: tuple[Exception, float] | None = None  # the last load's error, and when
        self._loading = threading.Lock()

    def _load_encoder(self):
        if self._encoder is not None:
            return self._encoder
        # HTTP requests run in a thread pool: one loads, the others wait a little, then answer 503
        # rather than hold every thread of the pool (and /recommend and /health with them) for a minute
        if not self._loading.acquire(timeout=LOAD_WAIT_S):
            from encoders.base import EncoderError

            raise EncoderError(f"the query encoder {self.setting['model']!r} is still loading: try again shortly")
        try:
            return self._load_encoder_locked()
        finally:
            self._loading.release()

    def _load_encoder_locked(self):
        # a new exception each time: one raised again and again would pile up every request's frames
        if self._unusable is not None:  # a loaded encoder that does not fit: not loaded again per query
            raise SearchUnavailableError(str(self._unusable))
        if self._failed is not None and time.monotonic() - self._failed[1] < LOAD_RETRY_S:
            raise type(self._failed[0])(str(self._failed[0]))  # not a load (a minute) per query
        if self._encoder is None:
            from encoders.base import EncoderError
            from encoders.encode import build_encoder, same_weights
            from encoders.resolve import CONTENT_FP
            from kgrec.config import EncoderConfig

            cfg = EncoderConfig(model=self.setting["model"], pooling=self.setting.get("pooling", "mean"),
                                max_length=int(self.setting.get("max_length", 128)), batch_size=1,
                                device=self.device, cache_dir=None)
            try:
                encoder = build_encoder(cfg, show_progress=False)
                # one text before any request's: the first call sets the tokenizer's padding and
                # truncation, which concurrent first calls would race on ("Already borrowed")
                encoder.encode(["warm up"])
            except Exception as e:  # EncoderError, a missing package...: the server's fault, tried again later
                error = EncoderError(f"the query encoder {self.setting['model']!r} cannot load: {e} (tried "
                                     f"again in {LOAD_RETRY_S:.0f} s)")
                self._failed = (error, time.monotonic())
                raise error from e
            if encoder.dim != self.item_text.shape[1]:
                self._unusable = SearchUnavailableError(
                    f"the encoder {self.setting['model']!r} gives {encoder.dim}-d vectors, but the "
                    f"items' text vectors are {self.item_text.shape[1]}-d")
                raise self._unusable
            encoded_with = self.setting.get("encoded_with")
            if (encoded_with and f"|fp={CONTENT_FP}" in encoded_with   # older fingerprints cannot be compared
                    and not same_weights(encoder.cache_namespace, encoded_with)):
                logger.warning("queries are encoded by %s, the items were by %s: if the weights differ, "
                               "search results will be poor until the model is retrained",
                               encoder.cache_namespace, encoded_with)
            self._encoder = encoder
        return self._encoder

    @property
    def encoder_state(self) -> str:
        """``loaded``, ``not loaded yet`` (on the first query), or why queries fail now."""
        if self._encoder is not None:
            return "loaded"
        if self._unusable is not None:
            return f"unusable: {self._unusable}"
        if self._failed is not None:
            return f"failed: {self._failed[0]}"
        return "not loaded yet"

    def warm(self) -> None:
        """Load the encoder now rather than on the first query."""
        self._load_encoder()

    def query_vector(self, text: str) -> torch.Tensor:
        """The (T,) unit-length vector of a query text, filled into the stored query template.

        Raises:
            ValueError: the text is empty once whitespace is collapsed.
        """
        from encoders.texts import fill

        filled = fill(self.setting.get("query_template", "{text}"), {"text": text})
        if not filled:
            raise ValueError("the search text is empty")
        vector = torch.from_numpy(np.asarray(self._load_encoder().encode([filled])[0], dtype=np.float32))
        return torch.nn.functional.normalize(vector, dim=0)

    def relevance(self, text: str) -> torch.Tensor:
        """(I,) cosine similarity of every item's text to ``text``; ``-inf`` for items without text
        (stored as zero rows), which would otherwise match every vague query."""
        return self._relevance(self.query_vector(text))

    def _relevance(self, query: torch.Tensor) -> torch.Tensor:
        scores = self.item_text @ query
        scores[self._textless] = float("-inf")
        return scores

    def use_index(self, min_items: int, nprobe: int, saved: Path | None = None) -> None:
        """Recall :meth:`top`'s items from a FAISS index of the text vectors (the one saved at
        ``saved`` when it fits, else a new one) when at least ``min_items`` items have text
        (``[serving] search_ann_min_items``; 0: always exact)."""
        rows = np.flatnonzero(~self._textless.numpy())
        self.index = saved_or_new_index(saved, self.item_text.numpy(), nprobe, rows) \
            if uses_index(len(rows), min_items) else None

    def top(self, text: str, n: int, exclude: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``n`` items most similar to ``text``, best first, leaving out the rows ``exclude``:
        their cosine similarities and item rows; fewer only when fewer items have text. (When the
        index's scanned cells hold too few, every item is scored.)

        Raises:
            ValueError: the text is empty once whitespace is collapsed, or n below 0.
        """
        if n < 0:
            raise ValueError(f"k must be >= 0, got {n}")
        return self.nearest(self.query_vector(text), n, exclude)

    def nearest(self, query: torch.Tensor, n: int,
                exclude: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`top` for an encoded (T,) unit-length query vector."""
        if n == 0:
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        skip = np.asarray(exclude if exclude is not None else (), dtype=np.int64)
        if self.index is not None:
            wanted = min(n + len(skip), self.index.index.ntotal)  # a huge k asks no more than the index holds
            scores, rows = (a[0] for a in self.index.search(query.numpy()[None], wanted))
            keep = np.flatnonzero((rows >= 0) & np.isfinite(scores) & ~np.isin(rows, skip))[:n]
            keep = keep[np.lexsort((rows[keep], -scores[keep]))]  # equal scores in row order, as below
            indexed_skips = int((~self._textless[torch.from_numpy(np.unique(skip))]).sum()) if len(skip) else 0
            if len(keep) == n or len(keep) >= self.index.index.ntotal - indexed_skips:
                return torch.from_numpy(scores[keep]), torch.from_numpy(rows[keep])
            # the scanned cells held too few items: every item is scored instead (rare)
        scores = self._relevance(query)
        scores[torch.from_numpy(skip)] = float("-inf")
        return top_k(scores, n)  # equal scores (items of one text) in row order


def with_text(item_text: np.ndarray) -> np.ndarray:
    """(I,) bool: the items whose text vector is usable: not a zero row (no text), nor a broken
    (NaN) one."""
    return np.any(item_text != 0, axis=1) & np.all(np.isfinite(item_text), axis=1)


def save_text_index(artifact_dir: str | Path, item_text: np.ndarray, min_items: int, nprobe: int = 128) -> Path | None:
    """Build the FAISS index of the items' text vectors into a model artifact when serving will
    search through one (at least ``min_items`` items with text, ``[serving] search_ann_min_items``);
    None when it will not."""
    rows = np.flatnonzero(with_text(item_text))
    if not uses_index(len(rows), min_items):
        return None
    return ItemIndex(item_text[rows], nprobe, rows=rows).write(Path(artifact_dir) / TEXT_INDEX_FILE)


def fuse_ranks(relevance: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    """Reciprocal rank fusion of two score vectors over the same candidates (higher is better).
    Equal scores share a rank, the best of theirs (a graph filter scores many items exactly 0:
    which of them the model "prefers" is not the index order). Fused ties are common too (ranks
    (a, b) and (b, a) fuse to the same value): callers order them by relevance."""
    def ranks(scores: torch.Tensor) -> torch.Tensor:  # 1 + how many score strictly higher
        ascending = torch.sort(-scores).values
        return torch.searchsorted(ascending, -scores).float() + 1

    return 1.0 / (RRF_K + ranks(relevance)) + 1.0 / (RRF_K + ranks(preference))
