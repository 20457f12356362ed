"""kgrec: knowledge-graph-centric recommender engine (CLI, config and pipeline glue)."""

__version__ = "0.1.0"
