"""One connection to a store database, opened on first use and re-opened after a failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from connectors.sinks.base import StoreUnavailableError


class StoreConnection:
    """A lazily (re)opened psycopg connection; an unreachable database is :class:`StoreUnavailableError`.

    ``prepare`` runs on each new connection before it is handed out (e.g. a session's replication origin).
    """

    def __init__(self, conninfo: str, what: str,
                 prepare: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
        self._conninfo = conninfo
        self.what = what
        self._prepare = prepare
        self._conn: psycopg.Connection[Any] | None = None

    def get(self) -> psycopg.Connection[Any]:
        """The open connection, connecting (and preparing it) first if there is none (or it was closed)."""
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(self._conninfo)
                if self._prepare is not None:
                    try:
                        self._prepare(conn)
                    except BaseException:
                        conn.close()
                        raise
            except psycopg.OperationalError as exc:
                raise StoreUnavailableError(f"{self.what} unreachable: {exc}") from exc
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the connection (re-opened by the next :meth:`get`)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
