"""The engine's exception roots (pure core: no imports of the project).

- :class:`PlatSyncError`: the base of every error PLAT Sync raises on purpose, so that a caller
  can tell the engine's own, explained errors from a library's or a bug.
- :class:`RetryableError`: the one marker of "unreachable for now". A store, the broker, the schema
  registry or Keycloak cannot be reached (or answers 5xx); the operation is retried with back-off
  and nothing is dead-lettered or lost for it. Modules mark their "unavailable" errors with it
  instead of subclassing another module's error.
"""

from __future__ import annotations


class PlatSyncError(Exception):
    """Base of every error PLAT Sync raises on purpose."""


class RetryableError(PlatSyncError):
    """A dependency is unreachable right now: retry with back-off; nothing is lost meanwhile."""
