"""A node's backup as data (pure): its manifest, names, checksums and retention (docs/backups.md).

A backup is a directory ``<node>-<UTC time>`` holding one ``pg_dump`` custom-format file per database of the
node (its stores and Keycloak's account tables) and ``manifest.json``: what was dumped, each file's size and
sha256, each table's row count in the dump's snapshot, and the **position** of each database: the WAL position
read just before its snapshot was taken, so every change after the position may be missing from the dump and
none before it is. Catching up from the positions replays at most a few changes the dump already holds, which
the version-guarded sinks ignore: nothing is lost, nothing is applied twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.core.errors import PlatSyncError
from streams.runtime.settings import Settings

FORMAT = "platsync-backup/1"
MANIFEST = "manifest.json"
#: A node's name as backups carry it: a topology node id (``[a-z][a-z0-9_-]*``), ``<cloud>.<hospital>`` for a
#: hospital's stores in the cloud, or a Kubernetes endpoint id (``remote.hosp-a``).
NODE_NAME = r"[a-z0-9][a-z0-9._-]*"
_NAME = re.compile(rf"^(?P<node>{NODE_NAME})-(?P<stamp>\d{{8}}T\d{{6}}Z)$")
_NODE = re.compile(rf"^{NODE_NAME}$")


class BackupError(PlatSyncError):
    """A backup cannot be made, read, verified or restored; the message says why and what to do."""


@dataclass(frozen=True)
class DumpedDatabase:
    """One database of a backup: the store it holds, its dump file, size, sha256, position and row counts."""

    store: str
    database: str
    file: str
    bytes: int
    sha256: str
    lsn: str  # the WAL position read before the dump's snapshot (pg_lsn text, e.g. 0/1A2B3C8)
    rows: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """What one backup holds (``manifest.json``)."""

    node: str
    side: str
    created_at: str  # ISO 8601 UTC
    server_version: str
    databases: tuple[DumpedDatabase, ...]
    duration_s: float
    # Every transaction id in the dumps is below this one (``pg_snapshot_xmax`` read after the last dump): a
    # restored server must continue past it (docs/backups.md, "Continuity of positions").
    xact_horizon: int = 0
    format: str = FORMAT

    def to_json(self) -> str:
        """The manifest as UTF-8 JSON text (two-space indented, sorted keys, final newline)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @property
    def total_bytes(self) -> int:
        """The size of every dump file together."""
        return sum(d.bytes for d in self.databases)


def parse_manifest(text: str, where: str) -> Manifest:
    """The manifest in ``text``; :class:`BackupError` naming ``where`` and the fault if it is not one."""
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise BackupError(f"{where}: format {data.get('format')!r} is not {FORMAT!r}")
        databases = tuple(DumpedDatabase(**d) for d in data["databases"])
        return Manifest(node=data["node"], side=data["side"], created_at=data["created_at"],
                        server_version=data["server_version"], databases=databases,
                        duration_s=float(data["duration_s"]), xact_horizon=int(data.get("xact_horizon", 0)),
                        format=data["format"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"{where}: not a valid backup manifest ({type(exc).__name__}: {exc})") from None


def check_node_name(node: str) -> str:
    """``node`` if backups can be named after it (:data:`NODE_NAME`, at most 63 characters); else
    :class:`BackupError` saying what a name may hold."""
    if not _NODE.match(node) or len(node) > 63:
        raise BackupError(f"cannot name backups after {node!r}: a node's name is 1-63 lower-case letters, digits, "
                          "'.', '_' or '-', starting with a letter or digit (e.g. hosp-a, remote.hosp-a)")
    return node


def backup_name(node: str, at: datetime) -> str:
    """The directory name of ``node``'s backup taken at ``at`` (sorts in time order)."""
    return f"{node}-{at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def name_time(name: str) -> datetime | None:
    """When the backup called ``name`` was taken (None if ``name`` is not a backup's name)."""
    match = _NAME.match(name)
    if match is None:
        return None
    return datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def expired(names: Iterable[str], keep: int) -> list[str]:
    """The backups to delete so that the newest ``keep`` remain (names of backups only; oldest first)."""
    if keep < 1:
        raise BackupError(f"backup retention must keep at least 1 backup, got {keep}")
    ordered = sorted((n for n in names if name_time(n) is not None), key=lambda n: name_time(n) or 0)
    return ordered[:-keep] if len(ordered) > keep else []


def age_s(manifest: Manifest, now: datetime) -> float:
    """How old a backup is at ``now``, in seconds."""
    return (now - datetime.fromisoformat(manifest.created_at)).total_seconds()


def describe_age(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3.2 h``, ``2.0 d``: an age for a status line."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def manifest_summary(manifest: Manifest) -> dict[str, Any]:
    """A JSON-ready line of ``platsync backup list``."""
    return {"node": manifest.node, "created_at": manifest.created_at, "bytes": manifest.total_bytes,
            "databases": [d.store for d in manifest.databases],
            "rows": sum(sum(d.rows.values()) for d in manifest.databases)}


def parse_lsn(text: str) -> int:
    """A ``pg_lsn`` text (``16/B374D848``) as a number."""
    high, _, low = text.partition("/")
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise BackupError(f"not a WAL position: {text!r}") from None


def wal_file_after(lsn: int, segment_bytes: int = 16 << 20, timeline: int = 1) -> str:
    """The name of the WAL segment after the one holding ``lsn`` (for ``pg_resetwal -l``): a restored server's
    positions then continue past every position its predecessor wrote."""
    segment = lsn // segment_bytes + 1
    per_id = 0x100000000 // segment_bytes
    return f"{timeline:08X}{segment // per_id:08X}{segment % per_id:08X}"


def epoch_after(xact_horizon: int) -> int:
    """The transaction id epoch (``pg_resetwal -e``) whose ids all exceed ``xact_horizon`` (a 64-bit id)."""
    return (xact_horizon >> 32) + 1


def backup_root(settings: Settings) -> Path:
    """Where this data dir's nodes keep their backups."""
    return Path(settings.backup_dir) if settings.backup_dir else settings.data_dir / "backups"


def parent_root(settings: Settings) -> Path:
    """Where the parent keeps the backups shipped to it."""
    return Path(settings.backup_parent_dir) if settings.backup_parent_dir else settings.data_dir / "parent-backups"
