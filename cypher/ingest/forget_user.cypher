// Privacy: remove a user with every event, search and friendship they have. $ids are the forms the
// id may be stored in (as ingest stores ids now, and as it did before invisible characters were
// removed from them): all of them are the one person.
UNWIND $ids AS id
MATCH (u:User {id: id})
DETACH DELETE u
RETURN count(*) AS deleted
