"""The console's audit log: ``<data_dir>/console/audit.jsonl``, append-only, one JSON object per line.

Each entry: ``time`` (ISO 8601 UTC, milliseconds), ``user`` (the realm username, or null before a login),
``action`` (login, logout, mode, link, recovery_copy, conflict_resolve, dead_letter_retry, ...), ``target``
(a node, the link, ids), ``outcome`` (ok, refused, failed, partial) and ``detail`` (what was asked or why it was
refused). Entries never hold a token, a password or a record's values: callers pass ids, codes and operator notes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.runtime.settings import Settings

#: Longest ``target`` and ``detail`` kept (longer ones are cut, marked with an ellipsis).
TARGET_MAX, DETAIL_MAX = 300, 1000
_BLOCK = 64 * 1024


def audit_path(settings: Settings) -> Path:
    """Where the console's audit log is."""
    return settings.data_dir / "console" / "audit.jsonl"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cut(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = "".join(c if c.isprintable() else " " for c in str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AuditLog:
    """Appends entries to the audit file (one ``write`` of one line each, under a lock) and reads them back."""

    def __init__(self, path: Path, clock: Callable[[], str] = _now_iso) -> None:
        self.path, self._clock = path, clock
        self._lock = threading.Lock()

    def append(self, user: str | None, action: str, target: str | None, outcome: str,
               detail: str | None = None) -> dict[str, Any]:
        """Record one entry; returns it."""
        entry = {"time": self._clock(), "user": user, "action": action, "target": _cut(target, TARGET_MAX),
                 "outcome": outcome, "detail": _cut(detail, DETAIL_MAX)}
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return entry

    def _lines_backwards(self) -> Iterator[bytes]:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            handle.seek(0, os.SEEK_END)
            position, rest = handle.tell(), b""
            while position > 0:
                step = min(_BLOCK, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step) + rest
                lines = chunk.split(b"\n")
                rest = lines[0]
                yield from reversed(lines[1:])
            yield rest

    def newest(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` entries, newest first (a damaged line is skipped)."""
        entries: list[dict[str, Any]] = []
        for raw in self._lines_backwards():
            if len(entries) >= limit:
                break
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(entry, dict):
                entries.append({k: entry.get(k) for k in ("time", "user", "action", "target", "outcome", "detail")})
        return entries
