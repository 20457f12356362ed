"""Knowledge graph: schema, ingestion, governance, export. Imports nothing of gnn or serving."""
