"""Free-text search: items recalled by text similarity to a query, ranked for a user by the model.

A model artifact may keep its items' text vectors (``item_text.npy``, written by ``kgrec train``
from the snapshot's ``text_embeddings.npz``) and the encoder setting that made them. A query is
encoded the same way (``[encoder] query_template``, the same model, pooling and length), so its
cosine similarity to each item's text is its relevance. Without a user the most relevant items are
the answer. For a user, the ``candidates`` most relevant items they have not interacted with are
recalled and ranked by reciprocal rank fusion of two orders: relevance, and the user's model scores
(``1/(60 + r_text) + 1/(60 + r_model)``, Cormack et al. 2009). The encoder is loaded on the first
query (on the CPU unless another device is given: one short text is quicker there than a copy to a
GPU that may be training).
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

RRF_K = 60  # reciprocal rank fusion's constant, the paper's value


class SearchUnavailableError(RuntimeError):
    """The model artifact holds no item text vectors to search."""


class TextSearch:
    """Relevance of every item to a free-text query, from the items' stored text vectors."""

    def __init__(self, item_text: np.ndarray, encoder: dict[str, Any], device: str = "cpu") -> None:
        self.item_text = torch.from_numpy(np.ascontiguousarray(item_text, dtype=np.float32))  # (I, T), unit rows
        self.setting = dict(encoder)
        self._textless = self.item_text.abs().sum(1) == 0
        self.device = device
        self._encoder = None
        self._loading = threading.Lock()

    def _load_encoder(self):
        with self._loading:  # HTTP requests run in a thread pool: load once
            if self._encoder is None:
                from encoders.encode import build_encoder
                from kgrec.config import EncoderConfig

                cfg = EncoderConfig(model=self.setting["model"], pooling=self.setting.get("pooling", "mean"),
                                    max_length=int(self.setting.get("max_length", 128)), batch_size=1,
                                    device=self.device, cache_dir=None)
                encoder = build_encoder(cfg, show_progress=False)
                if encoder.dim != self.item_text.shape[1]:
                    raise SearchUnavailableError(
                        f"the encoder {self.setting['model']!r} gives {encoder.dim}-d vectors, but the "
                        f"items' text vectors are {self.item_text.shape[1]}-d")
                encoded_with = self.setting.get("encoded_with")
                # the model's files, pooling and length, not the path it was named by
                if (encoded_with and "|fp=c2-" in encoded_with   # older, time-based fingerprints cannot be compared
                        and encoder.cache_namespace.split("|", 1)[-1] != encoded_with.split("|", 1)[-1]):
                    logger.warning("queries are encoded by %s, the items were by %s: if the weights differ, "
                                   "search results will be poor until the model is retrained",
                                   encoder.cache_namespace, encoded_with)
                self._encoder = encoder
        return self._encoder

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
        scores = self.item_text @ self.query_vector(text)
        scores[self._textless] = float("-inf")
        return scores


def fuse_ranks(relevance: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    """Reciprocal rank fusion of two score vectors over the same candidates (higher is better).
    Ties are common (ranks (a, b) and (b, a) fuse to the same value): order them by relevance."""
    def ranks(scores: torch.Tensor) -> torch.Tensor:
        order = torch.argsort(scores, descending=True, stable=True)
        out = torch.empty_like(order)
        out[order] = torch.arange(len(order))
        return out.float() + 1

    return 1.0 / (RRF_K + ranks(relevance)) + 1.0 / (RRF_K + ranks(preference))
