// Record which synthetic dataset the demo wrote into this database ($spec: JSON of SyntheticSpec).
MERGE (m:KgrecDemo {id: 'demo'})
SET m.spec = $spec, m.updated = datetime()
