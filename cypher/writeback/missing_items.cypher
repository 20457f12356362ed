// Which of the model's items $ids the graph no longer holds (deleted since the model's snapshot):
// left out of RECOMMENDED lists, whose ranks then run on without a gap.
UNWIND $ids AS id
OPTIONAL MATCH (i:Item {id: id})
WITH id, i WHERE i IS NULL
RETURN collect(id) AS missing
