"""Database connections kept open between a polling loop's rounds, one per connection string.

The mode server asks the stores every two seconds (open conflicts, applied progress). A new
connection each time cost a fork on the server and a SCRAM-SHA-256 exchange on both ends, seven
times per round and mode server: most of what an idle stack's mode servers and PostgreSQL did
(bench/RESULTS.md, issue 19). A kept connection is in autocommit (never idle in a transaction) and
is dropped, to be opened again next time, after any error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg


class KeptConnections:
    """Lends one open connection per connection string; thread-safe (a connection is lent to one
    caller at a time: a second concurrent caller gets a connection of its own, kept afterwards if
    none is)."""

    def __init__(self) -> None:  # noqa: D107
        self._idle: dict[str, psycopg.Connection[Any]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def connect(self, conninfo: str, **kwargs: Any) -> Iterator[psycopg.Connection[Any]]:
        """A connection to ``conninfo`` (``kwargs``: for :func:`psycopg.connect` when one is opened)."""
        key = conninfo + repr(sorted(kwargs.items()))
        with self._lock:
            conn = self._idle.pop(key, None)
        if conn is not None and not _alive(conn):
            conn = None
        if conn is None:
            conn = psycopg.connect(conninfo, autocommit=True, **kwargs)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        with self._lock:
            spare = self._idle.setdefault(key, conn)
        if spare is not conn:
            conn.close()

    def close(self) -> None:
        """Close every kept connection."""
        with self._lock:
            idle, self._idle = list(self._idle.values()), {}
        for conn in idle:
            conn.close()


def connection(connections: KeptConnections | None, conninfo: str,
               **kwargs: Any) -> AbstractContextManager[psycopg.Connection[Any]]:
    """A connection to ``conninfo`` lent by ``connections``, or, without them, a new one that is closed
    afterwards (``kwargs``: for :func:`psycopg.connect`)."""
    if connections is None:
        return psycopg.connect(conninfo, **kwargs)
    return connections.connect(conninfo, **kwargs)


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """False if the server dropped ``conn`` since it was kept (a restart, an administrator): one round
    trip, so that a caller never gets a dead connection and fails once for nothing."""
    if conn.closed or conn.broken:
        return False
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        conn.close()
        return False
    return True
