"""Reading a JSON payload with precise errors: the object reader and the rules every text field obeys.

Every text field of every API is checked here, before any store is touched, against a
:class:`TextRule`: no NUL character (PostgreSQL's ``text`` cannot hold one, and the store would
answer with an error that carries the row's values), no unpaired UTF-16 surrogate (not encodable
as UTF-8), no control character unless the field is free text, and a maximum length:

- fields that become Keycloak account fields (PRV_STF_003's username, e-mail, first and last
  name, PRV_ATH_001's username) obey Keycloak's own limits: its default user profile validates
  ``username`` (3 to 255), ``email``, ``firstName`` and ``lastName`` (at most 255) with the
  ``length`` validator, which counts UTF-16 code units like Java's ``String.length()``
  (keycloak/keycloak ``services/src/main/resources/org/keycloak/userprofile/config/
  keycloak-default-user-profile.json``; the columns of ``USER_ENTITY`` are ``varchar(255)``);
  its e-mail validator also caps the local part at 64 characters, and its
  ``person-name-prohibited-characters`` validator refuses some punctuation and control characters
  in first and last names (``PersonNameProhibitedCharactersValidator``);
- fields stored only in META (``text`` columns, unbounded in PostgreSQL) obey the product's own
  limits below, which keep one row far below the broker's message limit and every value usable
  as an index key.

Errors name the API, the JSON path and what was expected -- never the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from connectors.reference_api.errors import PayloadError

#: Keycloak's default user-profile length limit (username, email, firstName, lastName).
KEYCLOAK_MAX = 255
#: Keycloak's default minimum username length.
KEYCLOAK_USERNAME_MIN = 3
#: Keycloak's e-mail validator: longest local part (``max-local-length`` default).
KEYCLOAK_EMAIL_LOCAL_MAX = 64
#: Characters Keycloak's ``person-name-prohibited-characters`` validator refuses in first and last
#: names (its pattern ``[<>&"\v$%!#?§;*~/\\|^=\[\]{}()\p{Cntrl}]``; ``\v`` is Java's vertical
#: whitespace, ``\p{Cntrl}`` is U+0000-U+001F and U+007F).
PERSON_NAME_PROHIBITED = frozenset('<>&"$%!#?§;*~/\\|^=[]{}()\n\x0b\x0c\r\x85\u2028\u2029')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, LF and CR allowed
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class TextRule:
    """What a text field may hold.

    ``max_len`` counts characters (code points), or UTF-16 code units when ``utf16`` (Keycloak
    counts like Java). ``free_text`` allows tab, line feed and carriage return; ``person_name``
    applies Keycloak's person-name rule; ``why`` names the limit in error messages.
    """

    max_len: int
    why: str
    min_len: int = 1
    utf16: bool = False
    free_text: bool = False
    person_name: bool = False


#: Codes, identifiers, signers, roles and other one-line values stored in META.
CODE = TextRule(255, "the limit for codes and identifiers")
#: Names stored only in META (display, family and given names).
NAME = TextRule(255, "the limit for names")
#: A document title.
TITLE = TextRule(1000, "the limit for document titles")
#: PRV_USR_001's free-text profile.
PROFILE = TextRule(4000, "the limit for profiles", free_text=True)
#: A given patient or document number.
NUMBER = TextRule(64, "the limit for patient and document numbers")
#: A password (hashed by Keycloak; the bound only keeps the request sane).
PASSWORD = TextRule(1024, "the limit for passwords")
#: A Keycloak required action (``user_required_action.required_action`` is ``varchar(255)``).
REQUIRED_ACTION = TextRule(255, "Keycloak's limit for required actions")
#: A Keycloak username that is created (PRV_STF_003).
KC_USERNAME = TextRule(KEYCLOAK_MAX, "Keycloak's username limit", min_len=KEYCLOAK_USERNAME_MIN, utf16=True)
#: A Keycloak username that is looked up (PRV_ATH_001).
KC_USERNAME_LOOKUP = TextRule(KEYCLOAK_MAX, "Keycloak's username limit", utf16=True)
#: A Keycloak e-mail address.
KC_EMAIL = TextRule(KEYCLOAK_MAX, "Keycloak's e-mail limit", utf16=True)
#: A value that becomes a Keycloak first or last name.
KC_PERSON_NAME = TextRule(KEYCLOAK_MAX, "Keycloak's limit for first and last names", utf16=True,
                          person_name=True)


def json_type(value: Any) -> str:
    """The JSON type of ``value`` as an error message names it (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string" if value.strip() else "an empty string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _length(value: str, utf16: bool) -> int:
    return len(value.encode("utf-16-le", "surrogatepass")) // 2 if utf16 else len(value)


def text_problem(value: str, rule: TextRule) -> str | None:
    """What is wrong with ``value`` under ``rule`` (a message without the value), or None."""
    if "\x00" in value:
        return "contains a NUL character (U+0000), which the stores cannot hold"
    if _SURROGATE.search(value):
        return "contains an unpaired UTF-16 surrogate (not valid Unicode text)"
    if (_LINE_CONTROL if rule.free_text else _CONTROL).search(value):
        allowed = " other than tab, line feed and carriage return" if rule.free_text else ""
        return f"contains a control character{allowed}"
    if rule.person_name:
        bad = sorted({c for c in value if c in PERSON_NAME_PROHIBITED})
        if bad:
            shown = " ".join(repr(c)[1:-1] if not c.isprintable() else c for c in bad)
            return f"contains a character Keycloak refuses in person names ({shown})"
    length = _length(value, rule.utf16)
    unit = "UTF-16 code units" if rule.utf16 else "characters"
    if length > rule.max_len:
        return f"expected at most {rule.max_len} {unit} ({rule.why}), got {length}"
    if length < rule.min_len:
        return f"expected at least {rule.min_len} {unit} ({rule.why}), got {length}"
    return None


def has_non_ascii_digit(value: str) -> bool:
    """True if ``value`` holds a decimal digit other than ASCII 0-9 (e.g. full-width ``５``)."""
    return any(c.isdecimal() and not ("0" <= c <= "9") for c in value)


def email_problem(value: str) -> str | None:
    """What Keycloak's e-mail validator would refuse in an address (without the value), or None."""
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value):
        return "expected an e-mail address"
    if len(local) > KEYCLOAK_EMAIL_LOCAL_MAX:
        return (f"expected an e-mail address whose local part has at most {KEYCLOAK_EMAIL_LOCAL_MAX} "
                f"characters (Keycloak's e-mail validator), got {len(local)}")
    return None


class JsonObject:
    """A JSON object being read at ``path`` on behalf of ``api``; unknown keys are refused."""

    def __init__(self, api: str, path: str, value: Any, allowed: tuple[str, ...]) -> None:
        self.api, self.path = api, path
        if not isinstance(value, Mapping):
            self.fail("", f"expected a JSON object, got {json_type(value)}")
        self.data: Mapping[str, Any] = value
        for key in value:
            if key not in allowed:
                self.fail(str(key), f"unexpected key; allowed keys: {', '.join(allowed)}")

    def at(self, key: str) -> str:
        """The JSON path of ``key`` inside this object."""
        if not key:
            return self.path or "$"
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, expected: str) -> NoReturn:
        """Raise the :class:`PayloadError` of ``key``."""
        raise PayloadError(self.api, self.at(key), expected)

    def string(self, key: str, rule: TextRule = CODE, *, required: bool = True) -> str | None:
        """A non-empty string (whitespace only counts as empty) that obeys ``rule``."""
        if key not in self.data:
            if required:
                self.fail(key, "missing; expected a non-empty string")
            return None
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {json_type(value)}")
        problem = text_problem(value, rule)
        if problem is not None:
            self.fail(key, problem)
        return value

    def req(self, key: str, rule: TextRule = CODE) -> str:
        """A required non-empty string that obeys ``rule``."""
        value = self.string(key, rule)
        assert value is not None
        return value

    def array(self, key: str) -> list[Any]:
        """A required non-empty JSON array."""
        if key not in self.data:
            self.fail(key, "missing; expected a non-empty array")
        value = self.data[key]
        if not isinstance(value, list | tuple) or not value:
            got = "an empty array" if isinstance(value, list | tuple) else json_type(value)
            self.fail(key, f"expected a non-empty array, got {got}")
        return list(value)


def string_item(api: str, path: str, value: Any, rule: TextRule = CODE) -> str:
    """One element of an array of strings (``ids[3]``), checked like an object's string."""
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(api, path, f"expected a non-empty string, got {json_type(value)}")
    problem = text_problem(value, rule)
    if problem is not None:
        raise PayloadError(api, path, problem)
    return value
