"""The database side of the MHLW master route (docs/master.md): triggers, version sequence, protected columns.

On the **hospital** (``local``) META, ``master_medical_orgs`` holds the whole master and ``sync_target_orgs`` the
institutions the cloud needs. Triggers keep ``is_target`` equal to "listed in ``sync_target_orgs``" and give each
real change of a row a new ``version`` from one sequence, so that a version is never reused, not even by an
institution that leaves the master and comes back. The capture's publication carries the table with the row
filter ``WHERE is_target``: PostgreSQL sends only target rows, turns the update that makes a row a target into an
insert and the one that ends it into a delete, so the cloud's copy follows the target list with no other
machinery. An update that changes nothing is dropped by the trigger: it makes no version and no change event.
Every transaction changing either table is marked with the master's API id by a statement trigger, so a change
made with plain SQL is routed like one made by ``platsync master``.

On the **cloud** (``remote``) META the same table is the partial copy, written by the sync only. The configured
protected columns (``master_protected_columns``) exist there alone: the sync never writes them (they are not in
the captured rows), and a guard trigger lets anyone but the sync change nothing else, so an edit in the cloud
can neither be overwritten nor conflict. The cloud's publication leaves the table out: nothing flows back.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import Connection

from streams.core.errors import PlatSyncError

MASTER_TABLE = "master_medical_orgs"
TARGETS_TABLE = "sync_target_orgs"
VERSION_SEQUENCE = "master_org_version_seq"
#: The API ids of the master's changes (streams/routing/matrix.toml): an import, and a change of the targets.
MASTER_API = "PLAT_MST_001"
TARGETS_API = "PLAT_MST_002"
#: Transaction-local setting naming an import or target edit (the marker's call id), set by ``platsync master``.
CALL_ID_SETTING = "platsync.master_call_id"
#: The engine's columns of a synced row, set by the hospital's trigger, not by the writer.
_ENGINE_COLUMNS = ("id", "version", "deleted", "updated_at", "is_target")


class ProtectedColumnError(PlatSyncError):
    """A configured protected column has the name of a column the sync writes."""


_LOCAL_FUNCTIONS = f"""
CREATE SEQUENCE IF NOT EXISTS {VERSION_SEQUENCE};

CREATE OR REPLACE FUNCTION platsync_master_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per transaction, before its first row: the capture routes every row of it by this API id.
    IF current_setting('platsync.master_marked', true) IS DISTINCT FROM txid_current()::text THEN
        PERFORM platsync_mark_api(TG_ARGV[0], nullif(current_setting('{CALL_ID_SETTING}', true), ''));
        PERFORM set_config('platsync.master_marked', txid_current()::text, true);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION platsync_master_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.id := NEW.medical_id;
    NEW.deleted := false;
    NEW.is_target := EXISTS (SELECT 1 FROM {TARGETS_TABLE} t WHERE t.medical_id = NEW.medical_id);
    IF TG_OP = 'UPDATE' THEN
        NEW.version := OLD.version;
        NEW.updated_at := OLD.updated_at;
        IF NEW IS NOT DISTINCT FROM OLD THEN
            RETURN NULL;  -- nothing changed: no new version, no change event
        END IF;
    END IF;
    NEW.version := nextval('{VERSION_SEQUENCE}');
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION platsync_target_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The master's row trigger re-reads the target list: a new version, which the row filter sends as an
    -- insert (a target added) or a delete (a target removed); a changed note alone changes nothing.
    IF TG_OP <> 'INSERT' THEN
        UPDATE {MASTER_TABLE} SET is_target = false WHERE id = OLD.medical_id;  -- id: the primary key
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE {MASTER_TABLE} SET is_target = true WHERE id = NEW.medical_id;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION platsync_master_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE % is refused: the cloud''s copy of the master would not follow it', TG_TABLE_NAME
        USING HINT = 'delete the rows instead (platsync master import, or DELETE): see docs/master.md';
END $$;
"""

_LOCAL_TRIGGERS = f"""
CREATE OR REPLACE TRIGGER platsync_mark BEFORE INSERT OR UPDATE OR DELETE ON {MASTER_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION platsync_master_mark('{MASTER_API}');
CREATE OR REPLACE TRIGGER platsync_row BEFORE INSERT OR UPDATE ON {MASTER_TABLE}
    FOR EACH ROW EXECUTE FUNCTION platsync_master_row();
CREATE OR REPLACE TRIGGER platsync_no_truncate BEFORE TRUNCATE ON {MASTER_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION platsync_master_no_truncate();
CREATE OR REPLACE TRIGGER platsync_mark BEFORE INSERT OR UPDATE OR DELETE ON {TARGETS_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION platsync_master_mark('{TARGETS_API}');
CREATE OR REPLACE TRIGGER platsync_row AFTER INSERT OR UPDATE OR DELETE ON {TARGETS_TABLE}
    FOR EACH ROW EXECUTE FUNCTION platsync_target_row();
CREATE OR REPLACE TRIGGER platsync_no_truncate BEFORE TRUNCATE ON {TARGETS_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION platsync_master_no_truncate();
"""

_CODE_CHECKS = {
    MASTER_TABLE: "master_medical_orgs_code_format",
    TARGETS_TABLE: "sync_target_orgs_code_format",
}


def _remote_guard(synced: Sequence[str], protected: Sequence[str]) -> str:
    new = ", ".join(f"NEW.{c}" for c in synced)
    old = ", ".join(f"OLD.{c}" for c in synced)
    editable = ", ".join(protected) or "(none)"
    return f"""
CREATE OR REPLACE FUNCTION platsync_note_sync_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The sinks mark their transactions first (applied_by_sync): the master's guard recognises them by this.
    PERFORM set_config('platsync.applying_txid', txid_current()::text, true);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER platsync_sync_apply AFTER INSERT ON platsync_txn_marker
    FOR EACH ROW WHEN (NEW.applied_by_sync) EXECUTE FUNCTION platsync_note_sync_apply();

CREATE OR REPLACE FUNCTION platsync_master_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('platsync.applying_txid', true) IS NOT DISTINCT FROM txid_current()::text THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;  -- the sync, which writes the synced columns
    END IF;
    IF TG_OP = 'UPDATE' AND ROW({new}) IS NOT DISTINCT FROM ROW({old}) THEN
        RETURN NEW;  -- a protected column edited in the cloud
    END IF;
    RAISE EXCEPTION '% of {MASTER_TABLE} refused: the hospital''s master sync maintains this table', TG_OP
        USING HINT = 'in the cloud only these columns may be edited: {editable} (docs/master.md)';
END $$;
CREATE OR REPLACE TRIGGER platsync_guard BEFORE INSERT OR UPDATE OR DELETE ON {MASTER_TABLE}
    FOR EACH ROW EXECUTE FUNCTION platsync_master_guard();
CREATE OR REPLACE TRIGGER platsync_no_truncate BEFORE TRUNCATE ON {MASTER_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION platsync_master_no_truncate();
"""


def create_master_objects(conn: Connection, side: str, protected: Sequence[str], synced: Sequence[str]) -> None:
    """Create (idempotently) the master's triggers and sequence on the hospital (``local``), or its protected
    columns and guard on the cloud (``remote``); ``synced`` are the table's columns that the sync carries.

    Raises :class:`ProtectedColumnError` if a protected column has the name of a synced one.
    """
    clash = sorted(set(protected) & set(synced))
    if clash:
        raise ProtectedColumnError(
            f"master_protected_columns names {', '.join(clash)}, which the sync writes: choose other names")
    for table, name in _CODE_CHECKS.items():
        conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"))
        conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (medical_id ~ '^[0-9]{{10}}$')"))
    _run(conn, _LOCAL_FUNCTIONS)
    if side == "local":
        _run(conn, _LOCAL_TRIGGERS)
        return
    for column in protected:
        conn.execute(text(f"ALTER TABLE {MASTER_TABLE} ADD COLUMN IF NOT EXISTS {column} text"))
    _run(conn, _remote_guard(synced, protected))


def _run(conn: Connection, script: str) -> None:
    """Execute a script statement by statement: one ends with a line ending in ``;`` outside a ``$$`` body."""
    statement: list[str] = []
    for line in script.strip().splitlines():
        statement.append(line)
        body = "\n".join(statement)
        if line.rstrip().endswith(";") and body.count("$$") % 2 == 0:
            conn.execute(text(body))
            statement = []
    if any(line.strip() for line in statement):
        raise ValueError(f"unterminated statement: {statement[0]!r}")
