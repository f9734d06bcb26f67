"""Withdrawn states in a shared store's tombstones (docs/sharing.md): the one SQL both writers use.

A document made private is removed from a shared store (the cloud's ``fructos_patient``, a regional
server's copy); its tombstone keeps the withdrawn state's rank (``deleted``, ``approved``, ``content_hash``,
``updated_at`` beside ``version``), so that the conflict rule can order it against any later copy.
The cloud's API (:class:`connectors.stores.fructos.PostgresSignedRecordStore`) and the sinks
(:mod:`connectors.sinks.postgres_rows`) both read and write them here. The SQL uses the driver's
``%(name)s`` parameters (psycopg; SQLAlchemy's ``exec_driver_sql``).
"""

from __future__ import annotations

from datetime import datetime

from connectors.sinks import conflict_rule as rule

#: The withdrawn states among a table's tombstones of some ids (locked); hard deletes' keep none.
SELECT_WITHDRAWN = ("SELECT id, version, approved, content_hash, updated_at, deleted FROM platsync_tombstone "
                    "WHERE table_name = %(table)s AND id = ANY(%(ids)s) AND updated_at IS NOT NULL "
                    "ORDER BY id FOR UPDATE")

#: Record (or replace) the withdrawn state of a row: the rule already chose it over what was there.
UPSERT_WITHDRAWN = (
    "INSERT INTO platsync_tombstone (table_name, id, version, approved, content_hash, updated_at, deleted) "
    "VALUES (%(table)s, %(id)s, %(version)s, %(approved)s, %(content_hash)s, %(updated_at)s, %(deleted)s) "
    "ON CONFLICT (table_name, id) DO UPDATE SET version = EXCLUDED.version, approved = EXCLUDED.approved, "
    "content_hash = EXCLUDED.content_hash, updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted")


def withdrawn_key(version: int, approved: bool | None, content_hash: str | None,
                  updated_at: datetime, deleted: bool | None = None) -> rule.RankKey:
    """The conflict rule's key of a withdrawn state, as a row of :data:`SELECT_WITHDRAWN` holds it."""
    return rule.RankKey(deleted is True, bool(approved), version, content_hash or "", updated_at)
