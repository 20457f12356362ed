"""Graph models, training and evaluation over kg snapshots (see ``gnn.train``, ``gnn.evaluate``)."""
