"""kgrec's own exception types for graph access, each with a message a user can act on."""


class KgError(RuntimeError):
    """Base class for knowledge-graph errors."""


class Neo4jSetupError(KgError):
    """The managed Neo4j server cannot be installed or started."""


class Neo4jConnectionError(KgError):
    """Neo4j is unreachable or refused the credentials."""


class ConstraintViolation(KgError):
    """A write broke a uniqueness constraint."""


class SchemaConflictError(KgError):
    """An index of the database's own stands where kgrec needs a constraint or index of its own."""


class DatasetMixError(KgError):
    """A dataset's load would merge its ids into another dataset's graph."""
