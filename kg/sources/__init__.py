"""Readers for source formats. Each returns canonical rows (kg.records) plus quarantined rows."""
