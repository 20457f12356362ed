// A user's top-k list from the current model, for Cypher users in Neo4j Browser.
UNWIND $rows AS row
MATCH (u:User {id: row.user})
MATCH (i:Item {id: row.item})
CREATE (u)-[:RECOMMENDED {rank: row.rank, score: row.score, model: $model}]->(i)
