"""Recommendation models: one model, one file (``lightgcn``, ``gfcf``)."""
