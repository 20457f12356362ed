UNWIND $users AS uid
MATCH (:User {id: uid})-[r:RECOMMENDED]->()
DELETE r
