"""The engine's exception roots (pure core: no imports of the project).

- :class:`PlatSyncError`: the base of every error PLAT Sync raises on purpose, so that a caller
  can tell the engine's own, explained errors from a library's or a bug.
- :class:`FileFaultsError` with its :class:`FileFault` s: a validated file (the matrix, a topology, the
  share rules) is invalid, every fault with its file, key path and what was expected.
- :class:`RetryableError`: the one marker of "unreachable for now". A store, the broker, the schema
  registry or Keycloak cannot be reached (or answers 5xx); the operation is retried with back-off
  and nothing is dead-lettered or lost for it. Modules mark their "unavailable" errors with it
  instead of subclassing another module's error.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PlatSyncError(Exception):
    """Base of every error PLAT Sync raises on purpose."""


@dataclass(frozen=True)
class FileFault:
    """One problem in a file the engine validates on load (matrix, topology, share rules): the file,
    the dotted key path inside it, and what was expected."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"


class FileFaultsError(PlatSyncError):
    """A validated file is invalid; ``faults`` lists every problem found, one line each."""

    def __init__(self, faults: Sequence[FileFault]) -> None:
        self.faults: list[FileFault] = list(faults)
        super().__init__("\n".join(str(fault) for fault in self.faults))


def read_toml(path: Path, error: type[FileFaultsError]) -> dict[str, Any]:
    """The parsed TOML file at ``path``; ``error`` with one fault if it cannot be read or is not TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error([FileFault(str(path), "", f"cannot read: {exc.strerror or exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise error([FileFault(str(path), "", f"not valid TOML: {exc}")]) from None


class RetryableError(PlatSyncError):
    """A dependency is unreachable right now: retry with back-off; nothing is lost meanwhile."""
