"""Where each process of the engine publishes its state, and how the others read it.

Paths and readers of the small JSON state files under ``<data_dir>/state/`` that a capture and a
worker write for ``platsync status``, ``up``, the sync barrier and the metrics: in one place,
below both the processes that write them and the tools that read them (runtime layer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.runtime.jsonfile import read_json
from streams.runtime.settings import Settings


def progress_path(settings: Settings, side: str, store: str) -> Path:
    """Progress file of one captured database."""
    return settings.data_dir / "state" / "capture" / f"{side}.{store}.json"


def markers_path(settings: Settings, side: str, store: str) -> Path:
    """Saved transaction markers of one captured database (resume inside a transaction)."""
    return settings.data_dir / "state" / "capture" / f"{side}.{store}.markers.json"


def failure_path(settings: Settings, side: str, store: str) -> Path:
    """The full text of the last batch failure of one captured database (may quote row values,
    so it is kept out of the logs)."""
    return settings.data_dir / "state" / "capture" / f"{side}.{store}.failure.json"


def retrying_path(settings: Settings, side: str) -> Path:
    """What the capture of ``side`` is currently retrying (absent when nothing is), for ``status``."""
    return settings.data_dir / "state" / "capture" / f"{side}.retrying.json"


def capture_state(settings: Settings, side: str, store: str) -> dict[str, Any]:
    """The capture's last published progress for one source database ({} if none yet)."""
    return read_json(progress_path(settings, side, store))


def capture_retrying(settings: Settings, side: str, pid: int | None = None) -> str | None:
    """What the capture of ``side`` is waiting for right now (e.g. ``broker 127.0.0.1:19092``), or None.

    With ``pid``, only what that capture process reported (not a file left by an earlier one).
    """
    state = read_json(retrying_path(settings, side))
    what = state.get("what")
    if pid is not None and state.get("pid") != pid:
        return None
    return str(what) if what else None


def capture_waiting_for_broker(settings: Settings, side: str, pid: int | None = None) -> bool:
    """True while the capture of ``side`` (process ``pid``) holds a batch because the broker is out of
    reach (link cut, broker down): its engines stand still and the replication slots keep every change."""
    what = capture_retrying(settings, side, pid)
    return what is not None and what.startswith("broker")


def worker_state_path(settings: Settings, route: str) -> Path:
    """File where a worker publishes its liveness, counters and retries."""
    return settings.data_dir / "state" / "worker" / f"{route}.json"


def worker_state(settings: Settings, route: str) -> dict[str, Any]:
    """The worker's last published state for one route ({} if none yet)."""
    return read_json(worker_state_path(settings, route))
