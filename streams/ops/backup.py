"""Backups of a node's stores: create, ship to the parent, keep the last N, list, verify (docs/backups.md).

Each database is dumped by ``pg_dump`` (custom format) inside a snapshot exported by a read-only
``REPEATABLE READ`` transaction, whose row counts go into the manifest; the WAL position is read on another
connection just before the snapshot (:mod:`streams.ops.backup_format`). A backup is written under a hidden
``.partial`` name and renamed once complete, so a half-made backup is never listed, shipped or restored.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from connectors.keycloak.schema import ACCOUNT_TABLES
from streams.ops.backup_format import (
    MANIFEST,
    BackupError,
    DumpedDatabase,
    Manifest,
    backup_name,
    expired,
    file_sha256,
    name_time,
    parse_manifest,
)
from streams.runtime.connections import database_name, keycloak_db_dsn, libpq_dsn
from streams.runtime.pg_binaries import configured_pg_bin_dir
from streams.runtime.settings import Settings

Say = Callable[[str], None]
KEYCLOAK = "keycloak"


@dataclass(frozen=True)
class DumpSource:
    """One database of a node to dump: its store, conninfo (admin), and the tables (all if empty)."""

    store: str
    database: str
    conninfo: str
    tables: tuple[str, ...] = ()


def pg_tool(settings: Settings, name: str) -> Path:
    """``pg_dump`` or ``pg_restore`` of the newest PostgreSQL client on the machine (``pg_bin_dir`` first)."""
    candidates = [configured_pg_bin_dir(settings.pg_bin_dir)] if settings.pg_bin_dir else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    found = shutil.which(name)
    for directory in candidates:
        if (Path(directory) / name).exists():
            return Path(directory) / name
    if found:
        return Path(found)
    raise BackupError(f"{name} not found: install Debian's postgresql-client (or postgresql-15) package, or set "
                      "PLATSYNC_PG_BIN_DIR to the directory holding it")


def dump_sources(settings: Settings, side: str) -> list[DumpSource]:
    """The databases of ``side`` a backup holds: its captured stores, and Keycloak's account tables (the embedded
    stand-in's whole database: its realm too)."""
    out = [DumpSource(store, database_name(settings, side, store), libpq_dsn(settings, side, store))
           for store in settings.captured_stores(side) if store != KEYCLOAK]
    node = settings.node(side)
    if node.keycloak_db or node.keycloak_url:  # a real Keycloak: PLAT Sync backs up what it syncs
        out.append(DumpSource(KEYCLOAK, conninfo_to_dict(keycloak_db_dsn(settings, side)).get("dbname", KEYCLOAK),
                              keycloak_db_dsn(settings, side), ACCOUNT_TABLES))
    else:
        out.append(DumpSource(KEYCLOAK, database_name(settings, side, KEYCLOAK), keycloak_db_dsn(settings, side)))
    return out


def client_args(conninfo: str) -> tuple[list[str], dict[str, str]]:
    """``pg_dump``/``pg_restore`` connection arguments, and the password in the environment (never on argv)."""
    params = conninfo_to_dict(conninfo)
    password = params.pop("password", None)
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if password:  # else libpq's own sources: PGPASSWORD given to the process (Kubernetes), ~/.pgpass
        env["PGPASSWORD"] = str(password)
    return ["--dbname", make_conninfo(**{k: str(v) for k, v in params.items()})], env


def run_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    """Run a PostgreSQL client tool; :class:`BackupError` with the end of its error output if it fails."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")


def public_tables(conn: psycopg.Connection, only: tuple[str, ...]) -> list[str]:
    """The tables of the ``public`` schema (those of ``only`` if given), by name."""
    names = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                        "'public' AND table_type = 'BASE TABLE' ORDER BY table_name")]
    return [n for n in names if not only or n in only]


def with_database(conninfo: str, database: str) -> str:
    """``conninfo`` naming another database of the same server."""
    return make_conninfo(conninfo, dbname=database)


def dump_database(settings: Settings, source: DumpSource, target: Path) -> DumpedDatabase:
    """Dump one database into ``target`` inside an exported snapshot; its position, row counts, size, sha256."""
    with psycopg.connect(source.conninfo, autocommit=True) as probe:
        lsn = str(probe.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]
    with psycopg.connect(source.conninfo) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        tables = public_tables(conn, source.tables)
        rows = {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])  # type: ignore[index]
                for t in tables}
        args, env = client_args(source.conninfo)
        argv = [str(pg_tool(settings, "pg_dump")), *args, "--format=custom", "--no-owner", "--no-privileges",
                f"--snapshot={snapshot}", "--file", str(target)]
        argv += [f"--table=public.{t}" for t in source.tables]
        run_tool(argv, env, f"pg_dump of {source.database}")
        conn.rollback()
    return DumpedDatabase(store=source.store, database=source.database, file=target.name,
                          bytes=target.stat().st_size, sha256=file_sha256(target), lsn=lsn, rows=rows)


def create_backup(settings: Settings, side: str, node: str, root: Path, say: Say = print) -> Path:
    """Back up ``side``'s databases as ``node``'s backup under ``root/<node>/``; the backup's directory."""
    started = time.monotonic()
    now = datetime.now(UTC)
    final = root / node / backup_name(node, now)
    if final.exists():
        raise BackupError(f"{final} exists: a backup of {node} was taken this very second; take it again")
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    dumped = []
    try:
        sources = dump_sources(settings, side)
        for i, source in enumerate(sources, 1):
            began = time.monotonic()
            dumped.append(dump_database(settings, source, partial / f"{source.store}.dump"))
            say(f"[{i}/{len(sources)}] {source.store} ({source.database}): {dumped[-1].bytes:,} bytes, "
                f"{sum(dumped[-1].rows.values()):,} rows, position {dumped[-1].lsn}, "
                f"{time.monotonic() - began:.1f} s")
        with psycopg.connect(sources[0].conninfo) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            horizon = int(conn.execute(  # type: ignore[index]
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()[0])
        manifest = Manifest(node=node, side=side, created_at=now.isoformat(), server_version=version,
                            databases=tuple(dumped), duration_s=round(time.monotonic() - started, 3),
                            xact_horizon=horizon)
        _write_synced(partial / MANIFEST, manifest.to_json())
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def _write_synced(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_backup(path: Path) -> Manifest:
    """The manifest of the backup in ``path``; :class:`BackupError` if there is none or it is invalid."""
    try:
        return parse_manifest((path / MANIFEST).read_text(encoding="utf-8"), str(path / MANIFEST))
    except OSError as exc:
        raise BackupError(f"{path}: no readable {MANIFEST} ({exc.strerror or exc})") from None


def list_backups(root: Path, node: str) -> list[Path]:
    """``node``'s complete backups under ``root``, oldest first."""
    folder = root / node
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and name_time(p.name) is not None),
                  key=lambda p: p.name)


def check_files(path: Path) -> list[str]:
    """What is wrong with a backup's files (missing, size, sha256); empty if each matches its manifest."""
    manifest = read_backup(path)
    problems = []
    for db in manifest.databases:
        file = path / db.file
        if not file.is_file():
            problems.append(f"{db.file}: missing")
        elif file.stat().st_size != db.bytes:
            problems.append(f"{db.file}: {file.stat().st_size:,} bytes, the manifest says {db.bytes:,}")
        elif file_sha256(file) != db.sha256:
            problems.append(f"{db.file}: sha256 differs from the manifest's (the file is damaged)")
    return problems


def ship(path: Path, parent_root: Path) -> Path:
    """Copy a backup into its parent's store (``parent_root/<node>/<name>``), checked; the copy's directory."""
    target = parent_root / path.parent.name / path.name
    if target.is_dir() and not check_files(target):
        return target  # already shipped
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(path, partial)
    problems = check_files(partial)
    if problems:
        shutil.rmtree(partial, ignore_errors=True)
        raise BackupError(f"the copy of {path.name} in {parent_root} does not match: {'; '.join(problems)}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def prune(root: Path, node: str, keep: int) -> list[str]:
    """Delete ``node``'s oldest backups under ``root`` beyond the newest ``keep``; the names deleted."""
    gone = expired((p.name for p in list_backups(root, node)), keep)
    for name in gone:
        shutil.rmtree(root / node / name)
    return gone
