"""Verifying a backup: its files against the manifest, and on request a test restore (docs/backups.md).

The test restore loads each dump into a scratch database on the node's own PostgreSQL server
(``platsync_restore_test_<random>``), compares every table's row count with the count the manifest took in the
dump's snapshot, and drops the scratch database whatever happens. The node's own databases are never touched.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from streams.ops.backup import (
    Say,
    check_files,
    client_args,
    pg_tool,
    public_tables,
    read_backup,
    run_tool,
    with_database,
)
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings


@dataclass
class Verification:
    """What verifying one backup found: problems (none: verified) and what the test restore checked."""

    path: Path
    problems: list[str] = field(default_factory=list)
    restored_tables: int = 0
    restored_rows: int = 0

    @property
    def ok(self) -> bool:
        """Whether the backup passed every check made."""
        return not self.problems


def verify_backup(path: Path, settings: Settings | None = None, side: str = "",
                  say: Say = print) -> Verification:
    """Check the files of the backup in ``path``; with ``settings`` and ``side``, also restore it for a test on
    ``side``'s server."""
    result = Verification(path)
    try:
        result.problems = check_files(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable backup is a finding, not a crash
        result.problems = [str(exc)]
        return result
    if settings is None or result.problems:
        return result
    for db in read_backup(path).databases:
        scratch = f"platsync_restore_test_{secrets.token_hex(4)}"
        admin = libpq_dsn(settings, side, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            target = with_database(admin, scratch)
            args, env = client_args(target)
            run_tool([str(pg_tool(settings, "pg_restore")), *args, "--no-owner", "--no-privileges", "--exit-on-error",
                  str(path / db.file)], env, f"test restore of {db.file}")
            with psycopg.connect(target) as conn:
                found = {t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
                                .fetchone()[0])  # type: ignore[index]
                         for t in public_tables(conn, tuple(db.rows))}
            for table, rows in db.rows.items():
                if found.get(table) != rows:
                    result.problems.append(f"{db.file}: table {table} restored {found.get(table)} rows, the "
                                           f"manifest says {rows}")
            result.restored_tables += len(found)
            result.restored_rows += sum(found.values())
            say(f"test restore of {db.file}: {len(found)} tables, {sum(found.values()):,} rows as in the manifest"
                if not result.problems else f"test restore of {db.file}: MISMATCH")
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    return result
