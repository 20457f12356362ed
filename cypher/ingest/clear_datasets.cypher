// Remove the dataset records of a graph that holds no data any more (its loads wrote nothing, or
// their data was deleted since): a load into it starts its records afresh.
MATCH (m:KgrecMeta) WHERE m.key STARTS WITH $prefix
DELETE m
