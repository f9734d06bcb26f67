"""Mode-server hooks a test controls through a file: ``<data_dir>/test-mode-hooks.json``.

Pass ``--catching-up-hook tests.support.mode_hooks:catching_up`` and ``--conflicts-hook
tests.support.mode_hooks:open_conflicts`` to ``python -m streams.apply.mode_server``; then
:func:`set_hooks` decides what the running servers see (default: not catching up, no conflicts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from streams.runtime.settings import Settings

CATCHING_UP = "tests.support.mode_hooks:catching_up"
OPEN_CONFLICTS = "tests.support.mode_hooks:open_conflicts"


def hooks_path(data_dir: Path) -> Path:
    """The file the hooks read."""
    return data_dir / "test-mode-hooks.json"


def set_hooks(data_dir: Path, catching_up: bool = False, open_conflicts: int = 0) -> None:
    """What every mode server of ``data_dir`` will see from now on (atomically replaced)."""
    path = hooks_path(data_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"catching_up": catching_up, "open_conflicts": open_conflicts}), encoding="utf-8")
    os.replace(tmp, path)


def _read(settings: Settings) -> dict[str, object]:
    try:
        return dict(json.loads(hooks_path(settings.data_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def catching_up(settings: Settings, side: str) -> bool:
    """The ``catching_up`` the test set (False if none)."""
    return bool(_read(settings).get("catching_up", False))


def open_conflicts(settings: Settings) -> int:
    """The ``open_conflicts`` the test set (0 if none)."""
    return int(_read(settings).get("open_conflicts", 0))  # type: ignore[call-overload]
