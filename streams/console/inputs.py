"""What the console's JSON API accepts, checked before anything runs: errors are :class:`ApiError` (a status, a
code and a message that never repeats the value it refuses)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from streams.core.errors import PlatSyncError

#: Longest operator note (a mode's reason, a link state note, a conflict resolution).
NOTE_MAX = 500
#: Most ids one request may name, and the longest id.
IDS_MAX = 500
ID_MAX = 300
#: Largest request body the server reads (bytes).
BODY_MAX = 256 * 1024
AUDIT_LIMIT_DEFAULT, AUDIT_LIMIT_MAX = 100, 1000


class ApiError(PlatSyncError):
    """A refusal: HTTP ``status`` with ``{"error": code, "message": message}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        """The JSON answer."""
        return {"error": self.code, "message": self.message}


def bad(message: str) -> ApiError:
    """A 400 ``bad_request``."""
    return ApiError(400, "bad_request", message)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body (strict UTF-8, no NaN/Infinity); 400 ``invalid_json`` otherwise."""
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not UTF-8") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body nests too deeply") from None
    except ValueError:  # JSONDecodeError, a constant, an integer too long to convert
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return doc


def require_confirm(doc: dict[str, Any]) -> None:
    """A mutation needs ``"confirm": true`` (the page asks the operator first); 400 ``confirm_required``."""
    if doc.get("confirm") is not True:
        raise ApiError(400, "confirm_required", 'this action changes the system: send "confirm": true once the '
                       "operator confirmed it")


def note(doc: dict[str, Any], name: str = "note") -> str:
    """An optional free-text field (absent or null: empty), at most :data:`NOTE_MAX` characters, no control
    characters other than tab and newline."""
    value = doc.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad(f"{name} must be a string")
    if len(value) > NOTE_MAX:
        raise bad(f"{name} is longer than {NOTE_MAX} characters")
    if any((ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in value):
        raise bad(f"{name} contains control characters")
    return value.strip()


def choice(doc: dict[str, Any], name: str, choices: tuple[str, ...], nullable: bool = False) -> str | None:
    """A field that must be one of ``choices`` (or null when ``nullable``; a missing field counts as null)."""
    value = doc.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(choices) + (" or null" if nullable else "")
        raise bad(f"{name} must be one of {allowed}")
    return value


def id_list(doc: dict[str, Any], name: str = "ids") -> list[str]:
    """A non-empty list of distinct non-empty strings (at most :data:`IDS_MAX`, each at most :data:`ID_MAX`)."""
    value = doc.get(name)
    if not isinstance(value, list) or not value:
        raise bad(f"{name} must be a non-empty list of ids")
    if len(value) > IDS_MAX:
        raise bad(f"{name} names more than {IDS_MAX} ids")
    if not all(isinstance(v, str) and v.strip() and len(v) <= ID_MAX and v.isprintable() for v in value):
        raise bad(f"every entry of {name} must be a printable, non-empty string of at most {ID_MAX} characters")
    return list(dict.fromkeys(value))


def iso_ms(text: str | None, name: str) -> int | None:
    """An ISO 8601 time with a UTC offset as epoch milliseconds (None: not given)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise bad(f"{name} must be an ISO 8601 time with an offset, e.g. 2026-11-22T09:00:00+09:00") from None
    if when.tzinfo is None:
        raise bad(f"{name} needs a UTC offset, e.g. 2026-11-22T09:00:00+09:00")
    ms = when.timestamp() * 1000
    if not math.isfinite(ms):
        raise bad(f"{name} is out of range")
    return int(ms)


def query_choice(value: str | None, name: str, choices: tuple[str, ...], default: str) -> str:
    """A query parameter that must be one of ``choices`` (``default`` when absent)."""
    if value is None:
        return default
    if value not in choices:
        raise bad(f"{name} must be one of {', '.join(choices)}")
    return value


def audit_limit(value: str | None) -> int:
    """``limit`` of ``GET /api/audit``: 1..:data:`AUDIT_LIMIT_MAX` (default :data:`AUDIT_LIMIT_DEFAULT`)."""
    if value is None:
        return AUDIT_LIMIT_DEFAULT
    if not value.isascii() or not value.isdigit() or len(value) > 6 or not 1 <= int(value) <= AUDIT_LIMIT_MAX:
        raise bad(f"limit must be an integer from 1 to {AUDIT_LIMIT_MAX}")
    return int(value)
