"""The engine's small JSON state files (progress, link, mode, broker incarnation): one reader,
one atomic writer, shared by every process that keeps state under ``<data_dir>/state/``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or ``{}`` if it is absent or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_json(path: Path, doc: dict[str, Any], compact: bool = False) -> None:
    """Replace ``path`` atomically with ``doc`` (readers never see half a file).

    ``compact``: one line, keys unsorted, for state written after every batch: Python's C encoder
    serves only that form (an indented dump runs the pure-Python one, several times slower).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = _compact(doc) if compact else json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True)
    try:
        _write_text(tmp, text, "w")
    except FileNotFoundError:  # the directory first, only when missing: this runs after every batch
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_text(tmp, text, "w")
    os.replace(tmp, path)


def append_json(path: Path, doc: dict[str, Any]) -> None:
    """Append ``doc`` to ``path`` as one compact line (a journal; the file must exist)."""
    _write_text(path, _compact(doc), "a")


def _compact(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _write_text(path: Path, text: str, mode: str) -> None:
    with open(path, mode, encoding="utf-8") as file:
        file.write(text + "\n")
