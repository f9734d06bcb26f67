"""A transaction's marker read back from its store, for a marker row Debezium did not deliver.

:class:`~connectors.capture.envelope.TransactionStamper` asks for it when a row arrives whose
transaction it holds no marker for (see its module docstring for why that happens). The markers
table keeps every marker (re-capture reads them too), indexed by ``txid``. Debezium reports the
32-bit transaction id; the table holds the 64-bit one, so both the current and the previous epoch
are tried (the transaction is recent), the current one first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg

from connectors.capture.envelope import Marker, MarkerLookup

log = logging.getLogger("platsync.capture")

#: The first marker of the transaction wins, as when its row is captured.
MARKER_BY_XID_SQL = """
SELECT api_id, call_id, origin_side, applied_by_sync FROM platsync_txn_marker
WHERE txid IN (%(xid)s + ((txid_snapshot_xmax(txid_current_snapshot()) >> 32) << 32),
               %(xid)s + (((txid_snapshot_xmax(txid_current_snapshot()) >> 32) - 1) << 32))
ORDER BY txid DESC, id
LIMIT 1
"""


def marker_lookup(dsn: Callable[[], str], name: str, retrying: Callable[[Callable[[], Any], str], Any]) -> MarkerLookup:
    """A lookup reading markers over ``dsn()`` (the capture's role; asked only when a marker is missing, so
    that a capture never needs the credentials otherwise); ``retrying(action, what)`` runs the query,
    waiting out an unreachable database. ``name`` (``<side>.<store>``) is for the log."""

    def lookup(xid: int) -> Marker | None:
        def query() -> tuple[Any, ...] | None:
            with psycopg.connect(dsn() + " connect_timeout=5", autocommit=True) as conn:
                return conn.execute(MARKER_BY_XID_SQL, {"xid": xid}).fetchone()

        row = retrying(query, f"{name} (reading a transaction marker)")
        if row is None:
            return None  # written outside the APIs: the rows go out unmarked, as before
        log.warning("capture %s: the marker row of transaction %d was not delivered by Debezium (its resume "
                    "after a restart can skip the first change of a transaction); read it from the store",
                    name, xid)
        return Marker(api_id=str(row[0]), call_id=None if row[1] is None else str(row[1]),
                      origin_side=str(row[2]), applied_by_sync=bool(row[3]))

    return lookup
