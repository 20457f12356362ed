"""Connecting to Neo4j: one driver per process, created at the edge and passed in.

Errors from the driver are wrapped in :mod:`kg.errors` types whose message says what to do.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import neo4j
from neo4j import exceptions as neo4j_exc

import cypher
from kgrec.config import Neo4jConfig

from .errors import ConstraintViolation, Neo4jConnectionError
from .neo4j_server import credentials

logger = logging.getLogger(__name__)
T = TypeVar("T")
BOOKMARK_TIMEOUT = "Neo.TransientError.Transaction.BookmarkTimeout"


class Graph:
    """A Neo4j driver plus database name: the only way kgrec talks to the graph.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, driver: neo4j.Driver, database: str, where: str) -> None:
        self.driver = driver
        self.database = database
        self.where = where
        self._bookmarks = neo4j.GraphDatabase.bookmark_manager()  # see _session

    def forget_bookmarks(self) -> None:
        """Stop waiting for this graph's earlier writes: the database was replaced (a bulk import),
        its transaction ids start again, and a bookmark of the old one would hold every later
        transaction until it times out."""
        self._bookmarks = neo4j.GraphDatabase.bookmark_manager()

    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.driver.close()

    def _past_a_replaced_database(self, call: Callable[[], T]) -> T:
        """``call()``, and once more without bookmarks when the server says the database is behind
        them: another process's bulk import replaced it, and its transaction ids started again, so a
        bookmark of the old one would hold every transaction of this graph until it times out. On a
        cluster, a member still behind after the driver's 30 s of retries says the same: the call
        then goes on without the bookmarks, and may miss this process's latest writes (warned)."""
        try:
            return call()
        except neo4j_exc.TransientError as e:
            if e.code != BOOKMARK_TIMEOUT:
                raise
            logger.warning("Neo4j at %s is behind this process's last writes (the database was replaced, by "
                           "a bulk import?): going on from the database as it is now", self.where)
            self.forget_bookmarks()
            return call()

    def _wrap(self, e: Exception) -> Exception:
        if isinstance(e, neo4j_exc.ConstraintError):
            return ConstraintViolation(f"uniqueness constraint violated: {e.message}")
        if isinstance(e, neo4j_exc.AuthError):
            return Neo4jConnectionError(f"Neo4j at {self.where} refused the credentials: check NEO4J_USER/NEO4J_PASSWORD")
        if isinstance(e, neo4j_exc.IncompleteCommit):
            return Neo4jConnectionError(
                f"the connection to Neo4j at {self.where} broke during a commit, which may or may not have "
                f"happened: what committed before stays, and running the same command again completes it")
        if isinstance(e, neo4j_exc.SessionExpired):  # a cluster or Aura: no server answered, reads too
            return Neo4jConnectionError(
                f"lost the connection to Neo4j at {self.where} (no server available): check that it is up, "
                f"then run the command again (what committed before stays)")
        if isinstance(e, neo4j_exc.ClientError) and e.code == "Neo.ClientError.Database.DatabaseNotFound":
            return Neo4jConnectionError(f"Neo4j at {self.where} has no database {self.database!r}: fix NEO4J_DATABASE "
                                        f"([neo4j] database; a Community server, kgrec's own too, has only 'neo4j')")
        if isinstance(e, neo4j_exc.ClientError) and e.code == "Neo.ClientError.Security.AuthenticationRateLimit":
            return Neo4jConnectionError(f"Neo4j at {self.where} refuses this user's logins for a few seconds after too "
                                        f"many wrong passwords (from any client): wait, then run again; if it recurs, "
                                        f"look for a wrong NEO4J_PASSWORD (a cron job's, say)")
        if isinstance(e, neo4j_exc.ClientError) and e.code == "Neo.ClientError.Security.CredentialsExpired":
            return Neo4jConnectionError(f"Neo4j at {self.where} wants this user's password changed before any query "
                                        f"(a new user's first login): change it in Neo4j Browser or cypher-shell "
                                        f"(ALTER CURRENT USER SET PASSWORD FROM '...' TO '...'), then set NEO4J_PASSWORD")
        if isinstance(e, neo4j_exc.ServiceUnavailable):
            return Neo4jConnectionError(f"Neo4j at {self.where} is unreachable: start it with `kgrec neo4j start` or fix NEO4J_URI")
        return e

    def query(self, name: str, leader_: bool = False, **params: Any) -> list[dict[str, Any]]:
        """Run the read statement ``cypher/<name>.cypher`` and return its records as dicts; on a
        cluster, on a follower unless ``leader_`` (a statement whose answer must agree with the
        writes': a lock's age, read on the clock that wrote its heartbeat)."""
        text = cypher.load(name)
        routing = neo4j.RoutingControl.WRITE if leader_ else neo4j.RoutingControl.READ
        try:
            records, _, _ = self._past_a_replaced_database(lambda: self.driver.execute_query(
                text, parameters_=params, database_=self.database, bookmark_manager_=self._bookmarks,
                routing_=routing))
        except neo4j_exc.Neo4jError as e:
            raise self._wrap(e) from e
        except neo4j_exc.DriverError as e:
            raise self._wrap(e) from e
        return [r.data() for r in records]

    def write(self, name: str, before_: Callable[[], None] | None = None, **params: Any) -> neo4j.SummaryCounters:
        """Run the write statement ``cypher/<name>.cypher`` in a managed (retried) transaction;
        ``before_`` runs at the start of every attempt (see :meth:`transaction`)."""
        text = cypher.load(name)

        def work(tx: neo4j.ManagedTransaction) -> neo4j.SummaryCounters:
            return tx.run(text, params).consume().counters

        return self.transaction(work, before_)

    def write_counted(self, name: str, before_: Callable[[], None] | None = None,
                      **params: Any) -> tuple[neo4j.SummaryCounters, int]:
        """:meth:`write` for a statement that ends ``RETURN count(*) AS written``: its counters, and how
        many of the rows it was given reached its end (a row whose nodes are missing does not)."""
        counters, record = self.write_returning(name, before_, **params)
        return counters, int(record.get("written") or 0)

    def write_returning(self, name: str, before_: Callable[[], None] | None = None,
                        **params: Any) -> tuple[neo4j.SummaryCounters, dict[str, Any]]:
        """:meth:`write` for a statement that returns one record: its counters and that record
        (``{}`` when it returned none)."""
        text = cypher.load(name)

        def work(tx: neo4j.ManagedTransaction) -> tuple[neo4j.SummaryCounters, dict[str, Any]]:
            result = tx.run(text, params)
            record = result.single()
            return result.consume().counters, dict(record) if record is not None else {}

        return self.transaction(work, before_)

    def write_all(self, steps: Sequence[tuple[str, Mapping[str, Any]]],
                  before: Callable[[], None] | None = None) -> list[neo4j.SummaryCounters]:
        """Run several write statements ``(name, params)`` in order, in one transaction: all or none.
        Returns each statement's counters; ``before`` as in :meth:`transaction`."""
        texts = [(cypher.load(name), dict(params)) for name, params in steps]

        def work(tx: neo4j.ManagedTransaction) -> list[neo4j.SummaryCounters]:
            return [tx.run(text, params).consume().counters for text, params in texts]

        return self.transaction(work, before)

    def transaction(self, work: Callable[[neo4j.ManagedTransaction], T],
                    before: Callable[[], None] | None = None) -> T:
        """Run ``work(tx)`` in a managed write transaction (retried on transient errors for up to
        30 s). ``before`` runs at the start of every attempt, a retry's too: a lock holder's
        ``Lease.check``, so a batch retried after the lock was lost is never sent again."""
        def attempt(tx: neo4j.ManagedTransaction) -> T:
            if before is not None:
                before()
            return work(tx)

        def run() -> T:
            with self._session() as session:
                return session.execute_write(attempt)

        try:
            return self._past_a_replaced_database(run)
        except (neo4j_exc.Neo4jError, neo4j_exc.DriverError) as e:
            raise self._wrap(e) from e

    def _session(self, **options: Any) -> neo4j.Session:
        """A session whose work :meth:`query` sees, and that sees :meth:`query`'s: all share this
        graph's bookmarks, so on a cluster a read never lands on a member that has not yet applied
        an earlier write (a lock just taken, events just written)."""
        return self.driver.session(database=self.database, bookmark_manager=self._bookmarks, **options)

    def stream(self, name: str, **params: Any) -> Iterator[neo4j.Record]:
        """Stream the records of a read statement without holding them all in memory."""
        text = cypher.load(name)

        def start() -> tuple[neo4j.Session, neo4j.Result]:  # a new session takes the bookmarks as they are now
            session = self._session(default_access_mode=neo4j.READ_ACCESS, fetch_size=10000)
            try:
                return session, session.run(text, params)
            except BaseException:
                session.close()
                raise

        try:
            session, result = self._past_a_replaced_database(start)
            with session:
                yield from result
        except (neo4j_exc.Neo4jError, neo4j_exc.DriverError) as e:
            raise self._wrap(e) from e

    def run_script(self, name: str) -> None:
        """Run every statement of a multi-statement file (schema set-up), each on its own."""
        def run() -> None:
            with self._session() as session:
                for stmt in cypher.statements(cypher.load(name)):
                    session.run(stmt).consume()

        try:
            self._past_a_replaced_database(run)  # each statement is idempotent: all again
        except (neo4j_exc.Neo4jError, neo4j_exc.DriverError) as e:
            raise self._wrap(e) from e


def batches(rows: Sequence[T] | Iterable[T], size: int) -> Iterator[list[T]]:
    """Cut ``rows`` into lists of at most ``size``."""
    batch: list[T] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


URI_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")  # the driver's Bolt URIs


def connect(config: Neo4jConfig) -> Graph:
    """Open a verified connection to the configured Neo4j.

    Raises:
        Neo4jConnectionError: unreachable server, wrong or expired credentials, logins refused for a
            while after wrong passwords, or no such database, with a one-line fix.
        Neo4jSetupError: managed server with no password file yet.
    """
    uri = config.bolt_uri
    scheme = uri.partition("://")[0].lower()
    if scheme not in URI_SCHEMES:  # http:// reached a preview transport of the driver, which printed warnings
        raise Neo4jConnectionError(f"bad NEO4J_URI {uri!r}: kgrec speaks Bolt, so the URI starts with one of "
                                   f"{', '.join(s + '://' for s in URI_SCHEMES)} (the Browser's http:// address is not it)")
    user, password = credentials(config)
    try:
        driver = neo4j.GraphDatabase.driver(uri, auth=(user, password),
                                            connection_timeout=10, max_connection_lifetime=3600,
                                            notifications_min_severity="OFF")
    except (ValueError, neo4j_exc.ConfigurationError) as e:
        raise Neo4jConnectionError(f"bad NEO4J_URI {uri!r}: {e}") from e
    graph = Graph(driver, config.database, uri)
    try:
        driver.verify_connectivity()
        graph.query("schema/ping")  # the database, and a password that may query (the handshake passes both)
    except neo4j_exc.AuthError as e:
        driver.close()
        fix = (f"kgrec's own server takes the password in {config.password_file}: was it changed by hand?"
               if config.managed else "check NEO4J_USER/NEO4J_PASSWORD")
        raise Neo4jConnectionError(f"Neo4j at {uri} refused user {user!r}: wrong password? {fix}") from e
    except neo4j_exc.Neo4jError as e:  # the server's answer: a login rate limit, say
        driver.close()
        wrapped = graph._wrap(e)
        raise (wrapped if wrapped is not e else
               Neo4jConnectionError(f"Neo4j at {uri} answered user {user!r}'s first query with an error: "
                                    f"{e.message} ({e.code})")) from e
    except Neo4jConnectionError:  # the ping's, wrapped
        driver.close()
        raise
    except (neo4j_exc.ServiceUnavailable, neo4j_exc.DriverError, OSError) as e:
        driver.close()
        hint = "run `kgrec neo4j start`" if config.managed else "check NEO4J_URI and that the server is up"
        raise Neo4jConnectionError(f"Neo4j at {uri} is unreachable: {hint}") from e
    return graph
