"""Serving: load a model artifact, recall candidates, rank, answer over Python and HTTP."""

from .recommender import Recommendation, Recommender, UnknownItemError, UnknownUserError

__all__ = ["Recommendation", "Recommender", "UnknownItemError", "UnknownUserError"]
