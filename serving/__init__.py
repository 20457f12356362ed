"""Serving: load a model artifact and answer over Python and HTTP with an exact top-k over the whole
catalogue (embedding dot products, or a graph filter's scores), never an item the model's snapshot
records for the user (the lists written back to Neo4j also leave out what the graph records since:
:mod:`serving.writeback`); very large catalogues recall candidates from a FAISS index first
(:mod:`serving.recall`). :class:`LiveModel` follows the published ``current`` link, so servers
pick up retrained models."""

from .live import LiveModel
from .recommender import (AttributesUnavailableError, Recommendation, Recommender, UnknownAttributeError,
                          UnknownItemError, UnknownUserError)

__all__ = ["AttributesUnavailableError", "LiveModel", "Recommendation", "Recommender", "UnknownAttributeError",
           "UnknownItemError", "UnknownUserError"]
