"""Serving: load a model artifact, recall candidates, rank, answer over Python and HTTP."""

from .recommender import Recommendation, Recommender

__all__ = ["Recommendation", "Recommender"]
