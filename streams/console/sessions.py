"""The console's sessions: kept in this process's memory (a restart logs everyone out), each named by a random
cookie value, with its own CSRF token and an idle limit (``console_session_idle_s``)."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "platsync_console"
#: Sessions kept at most (the least recently used go first).
SESSIONS_MAX = 1000
#: Longest cookie value looked up (ours are 43 characters).
_COOKIE_MAX = 128


@dataclass
class Session:
    """One operator's login: who, the CSRF token every POST must carry, the ID token for logout, last activity."""

    id: str
    username: str
    name: str
    sub: str
    csrf: str
    id_token: str
    created: float
    last_seen: float


class Sessions:
    """Live sessions by cookie value; a session idle for ``idle_s`` seconds is gone."""

    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic,
                 max_sessions: int = SESSIONS_MAX) -> None:
        self.idle_s, self._clock, self._max = idle_s, clock, max_sessions
        self._sessions: dict[str, Session] = {}

    def create(self, username: str, name: str, sub: str, id_token: str) -> Session:
        """A new session (random 32-byte id and CSRF token)."""
        self._purge()
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), username, name, sub, secrets.token_urlsafe(32), id_token, now,
                          now)
        self._sessions[session.id] = session
        return session

    def get(self, cookie: str | None, touch: bool = True) -> Session | None:
        """The live session of ``cookie`` (its idle time restarts when ``touch``); None if unknown or idle too long
        (an idle session is ended here)."""
        if not cookie or len(cookie) > _COOKIE_MAX:
            return None
        session = self._sessions.get(cookie)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen >= self.idle_s:
            del self._sessions[cookie]
            return None
        if touch:
            session.last_seen = now
            self._sessions[cookie] = self._sessions.pop(cookie)  # most recently used last
        return session

    def end(self, cookie: str | None) -> Session | None:
        """End the session of ``cookie``; the session ended (None if there was none)."""
        return self._sessions.pop(cookie, None) if cookie else None

    def _purge(self) -> None:
        now = self._clock()
        for sid in [k for k, s in self._sessions.items() if now - s.last_seen >= self.idle_s]:
            del self._sessions[sid]
        while len(self._sessions) >= self._max:
            del self._sessions[next(iter(self._sessions))]

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_ok(session: Session, token: str | None) -> bool:
    """True if ``token`` is the session's CSRF token (constant-time comparison)."""
    if not token or len(token) > _COOKIE_MAX or not token.isascii():
        return False
    return hmac.compare_digest(session.csrf.encode("ascii"), token.encode("ascii"))
