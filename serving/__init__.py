"""Serving: load a model artifact and answer over Python and HTTP with an exact top-k over the whole
catalogue (embedding dot products, or a graph filter's scores), never a user's own items; very
large catalogues recall candidates from a FAISS index first (:mod:`serving.recall`).
:class:`LiveModel` follows the published ``current`` link, so servers pick up retrained models."""

from .live import LiveModel
from .recommender import Recommendation, Recommender, UnknownAttributeError, UnknownItemError, UnknownUserError

__all__ = ["LiveModel", "Recommendation", "Recommender", "UnknownAttributeError", "UnknownItemError",
           "UnknownUserError"]
