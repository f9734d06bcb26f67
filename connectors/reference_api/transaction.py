"""One API call's transactions: one per source store, each opened by the API marker.

The integration contract (``docs/integration.md``): the first statement of every transaction
that writes a source store is ``SELECT platsync_mark_api(:api_id, :call_id)``. :class:`ApiCall`
opens those transactions, runs the marker in each, records which ids the call wrote, and
commits them all at the end -- or rolls all of them back if anything failed, so a refused call
writes nothing.

The stores are separate PostgreSQL databases, so the commits are not atomic across stores:
every check and every write of all stores happens *before* the first commit, and then the
FRUCtoS transactions commit before META (META never points at a record that was not
committed). Only a failure between those back-to-back commits could leave a partial call.
"""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MARK_API_SQL = text("SELECT platsync_mark_api(:api_id, :call_id)")

#: Commit order: record stores first, META last.
COMMIT_ORDER: tuple[str, ...] = ("fructos_own", "fructos_patient", "meta")


class ApiCall:
    """The transactions of one API call; use as a context manager (commit on success)."""

    def __init__(self, api_id: str, call_id: str, side: str, engines: dict[str, Engine],
                 when_needed: dict[str, Engine] | None = None) -> None:
        self.api_id = api_id
        self.call_id = call_id
        self.side = side
        self._engines = engines
        #: Stores opened (and marked) only if the call asks for them: no marker where nothing is written.
        self._when_needed = dict(when_needed or {})
        self._stack = ExitStack()
        self._conns: dict[str, Connection] = {}
        self.txids: dict[str, int] = {}
        self.written: dict[str, dict[str, list[str]]] = {}
        self._seen: dict[tuple[str, str], set[str]] = {}

    def __enter__(self) -> ApiCall:
        try:
            for store, engine in self._engines.items():
                self._open(store, engine)
        except BaseException:
            self._stack.close()
            raise
        return self

    def _open(self, store: str, engine: Engine) -> Connection:
        conn = self._stack.enter_context(engine.connect())
        conn.begin()
        # THE integration contract: the marker is the transaction's first statement.
        txid = conn.execute(MARK_API_SQL, {"api_id": self.api_id, "call_id": self.call_id}).scalar_one()
        self._conns[store] = conn
        self.txids[store] = int(txid)
        return conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                for store in sorted(self._conns, key=COMMIT_ORDER.index):
                    self._conns[store].commit()
            else:
                for conn in self._conns.values():
                    conn.rollback()
        finally:
            self._stack.close()  # closing a connection rolls back anything left open

    def conn(self, store: str) -> Connection:
        """The open, marked transaction of ``store`` (opened now if it is one the call may need)."""
        try:
            return self._conns[store]
        except KeyError:
            if store in self._when_needed:
                return self._open(store, self._when_needed.pop(store))
            raise RuntimeError(
                f"{self.api_id} on the {self.side} side does not write store {store!r}") from None

    def wrote(self, store: str, table: str, row_id: str) -> None:
        """Record that this call created or changed ``row_id`` in ``store``.``table``."""
        seen = self._seen.setdefault((store, table), set())
        if row_id not in seen:  # a set: a list's membership test made a 50,000-row bulk quadratic
            seen.add(row_id)
            self.written.setdefault(store, {}).setdefault(table, []).append(row_id)

    def result(self) -> dict[str, Any]:
        """The call's JSON-able result: API, side, call id, ids written per store and table."""
        return {
            "api": self.api_id,
            "side": self.side,
            "call_id": self.call_id,
            "written": {store: {table: list(ids) for table, ids in tables.items()}
                        for store, tables in self.written.items()},
            "txids": dict(self.txids),
        }
