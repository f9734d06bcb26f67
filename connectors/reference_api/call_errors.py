"""How ``platsync call`` reports a failed call: one line for the operator, the detail in a file.

Errors never echo payload values. The reference API's own errors (:class:`ApiError`,
:class:`PayloadError`, :class:`SerialExhaustedError`) are written that way and are printed as
they are. Any other exception -- a database driver's, SQLAlchemy's, an HTTP client's -- may carry
row values in its message (SQLAlchemy prints ``[parameters: {...}]``, PostgreSQL quotes the
refused value), so it is reported by its kind only: the exception class, the SQLSTATE if there
is one, and where the detail went. The detail file (``<data dir>/logs/call-errors.log``, mode
0600) gets the exception chain's classes, SQLSTATEs, the SQL statements *without* their
parameters and the stack (code locations only) -- still no values.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from connectors.reference_api.errors import ApiError
from connectors.stores.serials import SerialExhaustedError

#: Exceptions whose messages are ours and free of payload values.
OWN_ERRORS: tuple[type[BaseException], ...] = (ApiError, SerialExhaustedError)


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during, each once, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _kind(exc: BaseException) -> str:
    return f"{type(exc).__module__.split('.')[0]}.{type(exc).__qualname__}"


def sqlstate_of(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE anywhere in ``exc``'s chain (psycopg or a SQLAlchemy wrapper), or None."""
    for link in exception_chain(exc):
        for candidate in (link, getattr(link, "orig", None)):
            state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
            if isinstance(state, str) and state:
                return state
    return None


def one_line(exc: BaseException, api_id: str, side: str, detail: Path | None) -> str:
    """The single line ``platsync call`` prints for ``exc`` (never a payload value)."""
    if isinstance(exc, OWN_ERRORS):
        return " ".join(str(exc).split())
    if isinstance(exc, json.JSONDecodeError):
        return f"the payload is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
    if isinstance(exc, UnicodeDecodeError):
        return "the payload file is not UTF-8 text"
    state = sqlstate_of(exc)
    hint = ""
    if state and state.startswith("22"):
        hint = "; a payload value the store cannot hold (a data exception)"
    elif state and state.startswith("23"):
        hint = "; the store refused the row (an integrity constraint)"
    elif (state and state.startswith("08")) or any(type(link).__name__ == "OperationalError"
                                                   for link in exception_chain(exc)):
        hint = "; a store could not be reached or failed"
    where = f"; details in {detail}" if detail is not None else ""
    what = _kind(exc) + (f", SQLSTATE {state}" if state else "")
    return f"{api_id} on the {side} side failed ({what}){hint}{where}"


def write_detail(path: Path, exc: BaseException, api_id: str, side: str) -> Path | None:
    """Append the value-free detail of ``exc`` to ``path``; the path, or None if it cannot be written."""
    lines = [f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {api_id} on {side}: {_kind(exc)}"]
    for link in exception_chain(exc):
        state = getattr(link, "sqlstate", None) or getattr(getattr(link, "orig", None), "sqlstate", None)
        statement = getattr(link, "statement", None)
        lines.append(f"  caused by {_kind(link)}" + (f" (SQLSTATE {state})" if state else ""))
        if isinstance(link, OWN_ERRORS):
            lines.append(f"    {' '.join(str(link).split())}")
        if isinstance(statement, str):
            lines.append("    SQL (parameters not shown): " + " ".join(statement.split())[:2000])
        for frame in traceback.extract_tb(link.__traceback__):
            lines.append(f"    at {frame.filename}:{frame.lineno} in {frame.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
    except OSError:
        return None
    return path
