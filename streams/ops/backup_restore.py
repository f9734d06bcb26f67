"""Loading a backup's dumps into a node's server (docs/backups.md, "Restore"): each database dropped, created
empty and restored in one transaction, without the old server's owners, grants and publications (the node's
provisioning makes its own). Which backup: the newest sound one its parent holds, unless one is named.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from streams.ops.backup import (
    Say,
    check_files,
    client_args,
    dump_sources,
    list_backups,
    pg_tool,
    read_backup,
    run_tool,
    with_database,
)
from streams.ops.backup_format import BackupError, Manifest
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings


def choose_backup(root: Path, node: str, named: str | None) -> Path:
    """The backup to restore: ``named`` (a name under ``root/<node>`` or a directory), else the newest whose
    files match its manifest; :class:`BackupError` if there is none."""
    if named:
        path = Path(named) if Path(named).is_dir() else root / node / named
        if not path.is_dir():
            raise BackupError(f"no backup {named!r} of {node} in {root / node}")
        problems = check_files(path)
        if problems:
            raise BackupError(f"{path.name} is damaged: {'; '.join(problems)}")
        return path
    for path in reversed(list_backups(root, node)):
        if not check_files(path):
            return path
    raise BackupError(f"{root / node} holds no sound backup of {node} (see 'platsync backup list')")


def restore_databases(settings: Settings, side: str, path: Path, say: Say = print) -> Manifest:
    """Replace ``side``'s databases with the backup's dumps; its manifest. A real Keycloak's database is left
    alone (its account tables are Keycloak's to restore: docs/backups.md)."""
    manifest = read_backup(path)
    sources = {s.store: s for s in dump_sources(settings, side)}
    admin = libpq_dsn(settings, side, "postgres")
    for i, db in enumerate(manifest.databases, 1):
        source = sources.get(db.store)
        if source is None:
            raise BackupError(f"{path.name} holds {db.store}, which {side} does not have")
        if source.tables:  # a real Keycloak: only its account tables were dumped
            say(f"[{i}/{len(manifest.databases)}] {db.store}: not restored (a real Keycloak's; restore its "
                "account tables with Keycloak's own procedure)")
            continue
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(source.database)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(source.database)))
        args, env = client_args(with_database(admin, source.database))
        run_tool([str(pg_tool(settings, "pg_restore")), *args, "--no-owner", "--no-privileges", "--no-publications",
                  "--no-subscriptions", "--single-transaction", "--exit-on-error", str(path / db.file)],
                 env, f"restore of {db.file} into {source.database}")
        say(f"[{i}/{len(manifest.databases)}] {db.store} ({source.database}): restored "
            f"{sum(db.rows.values()):,} rows")
    return manifest

