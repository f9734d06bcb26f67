"""Applied positions per route and source store, kept in the target side's META database
(a regional server's replica route: in its replica store's database, the only one it has).

The worker records, after every batch has been flushed to all sinks, the highest source LSN
and commit time it has processed for each source store, and the last sync probe it saw.
Lag is the distance between what a capture produced (its source positions) and these rows:
the broker's high watermark is never used.
"""

from __future__ import annotations

from typing import Any

import psycopg

from connectors.sinks.base import StoreUnavailableError
from connectors.sinks.connection import StoreConnection
from streams.core.reports import StoreProgress
from streams.runtime.connections import libpq_dsn
from streams.runtime.kept_connections import KeptConnections, connection
from streams.runtime.settings import Settings

UPSERT = """
INSERT INTO platsync_progress (route, source_store, last_lsn, last_commit_ts_ms, last_probe_id,
                               events_seen, writes_applied, dead_letters, updated_at)
VALUES (%(route)s, %(store)s, %(last_lsn)s, %(last_commit_ts_ms)s, %(last_probe_id)s,
        %(events_seen)s, %(writes_applied)s, %(dead_letters)s, now())
ON CONFLICT (route, source_store) DO UPDATE SET
    last_lsn = GREATEST(platsync_progress.last_lsn, EXCLUDED.last_lsn),
    last_commit_ts_ms = GREATEST(platsync_progress.last_commit_ts_ms, EXCLUDED.last_commit_ts_ms),
    last_probe_id = GREATEST(EXCLUDED.last_probe_id, platsync_progress.last_probe_id),
    events_seen = platsync_progress.events_seen + EXCLUDED.events_seen,
    writes_applied = platsync_progress.writes_applied + EXCLUDED.writes_applied,
    dead_letters = platsync_progress.dead_letters + EXCLUDED.dead_letters,
    updated_at = now()
"""


class ProgressRecorder:
    """Adds each batch's progress to the target side's META ``platsync_progress`` table.

    One connection for the worker's life (re-opened after a failure): a new connection per
    batch cost a process start and a SCRAM authentication on both ends every time.
    """

    def __init__(self, settings: Settings, route: str, target_side: str, store: str = "meta") -> None:
        self.route = settings.progress_route(route)
        self._connection = StoreConnection(libpq_dsn(settings, target_side, store, "apply") + " connect_timeout=5",
                                           f"{target_side}/{store} (progress)")

    def __call__(self, per_store: dict[str, StoreProgress]) -> None:
        """Record one batch's progress (in one transaction)."""
        rows = [{"route": self.route, "store": store, **vars(p)} for store, p in per_store.items()]
        if not rows:
            return
        conn = self._connection.get()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(UPSERT, rows)
        except psycopg.OperationalError as exc:
            self.close()
            raise StoreUnavailableError(f"{self._connection.what}: {exc}") from exc

    def close(self) -> None:
        """Close the connection (re-opened by the next call)."""
        self._connection.close()


def read_progress(settings: Settings, target_side: str, role: str = "operator",
                  store: str = "meta", connections: KeptConnections | None = None) -> list[dict[str, Any]]:
    """All progress rows of the routes applied into ``target_side`` (read as ``role``; kept in ``store``;
    ``connections``: kept open between calls)."""
    dsn = libpq_dsn(settings, target_side, store, role) + " connect_timeout=3"
    with connection(connections, dsn) as conn:
        cur = conn.execute(
            "SELECT route, source_store, last_lsn, last_commit_ts_ms, last_probe_id, events_seen, "
            "writes_applied, dead_letters, extract(epoch from updated_at) * 1000 FROM platsync_progress")
        names = ["route", "source_store", "last_lsn", "last_commit_ts_ms", "last_probe_id", "events_seen",
                 "writes_applied", "dead_letters", "updated_ts_ms"]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
