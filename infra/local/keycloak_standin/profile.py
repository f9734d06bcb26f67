"""The default user profile's validation of the root attributes, as Keycloak 24+ answers it.

A real Keycloak validates a user representation against the realm's declarative user profile
before it touches its database. The default profile (keycloak/keycloak
``services/src/main/resources/org/keycloak/userprofile/config/keycloak-default-user-profile.json``)
declares:

=============  ===========================================================================
``username``   ``length`` min 3, max 255 (plus prohibited-character and homograph rules, not
               modelled here)
``email``      ``email`` (``EmailValidator``: local part at most 64 characters), ``length`` max 255
``firstName``  ``length`` max 255, ``person-name-prohibited-characters``
``lastName``   ``length`` max 255, ``person-name-prohibited-characters``
=============  ===========================================================================

``LengthValidator`` trims the value (Java ``String.trim``; the stored value is not trimmed, so
a value padded beyond 255 passes it and then fails at the column, in Keycloak as here -- the
reference API's own check counts the untrimmed value) and counts UTF-16 code units; with only
a maximum its message is ``error-invalid-length-too-long``, with both bounds
``error-invalid-length``; its parameters are ``[attribute, min, max]`` (``min`` null when not
configured). A refusal is HTTP 400 with Keycloak's ``ErrorRepresentation``: one error as
``{"field", "errorMessage", "params"}``, several as ``{"errors": [...]}``
(``UserResource.validateUserProfile`` -> ``ErrorResponse.errors(errors, BAD_REQUEST)``, which
shrinks a single error to the object itself). ``EmailValidator`` passes the refused address as a
parameter (``["email", value]``), as Keycloak does; the person-name rule passes only the field.
Without this module the stand-in let an over-long first name reach its ``varchar(255)`` column
and answered HTTP 500, which the client took for an unreachable Keycloak.
"""

from __future__ import annotations

import re
from typing import Any

from infra.local.keycloak_standin.storage import StoreError

MAX_LENGTH = 255
USERNAME_MIN = 3
EMAIL_LOCAL_MAX = 64
#: ``PersonNameProhibitedCharactersValidator``'s pattern ``^[^<>&"\v$%!#?§;*~/\\|^=\[\]{}()\p{Cntrl}]+$``.
_PERSON_NAME_BAD = re.compile(r'[<>&"\n\x0b\x0c\r\x85\u2028\u2029$%!#?§;*~/\\|^=\[\]{}()\x00-\x1f\x7f]')


def _java_trim(value: str) -> str:
    """Java's ``String.trim``: strips every character up to U+0020 at both ends."""
    start, end = 0, len(value)
    while start < end and value[start] <= " ":
        start += 1
    while end > start and value[end - 1] <= " ":
        end -= 1
    return value[start:end]


def _utf16_length(value: str) -> int:
    return len(value.encode("utf-16-le", "surrogatepass")) // 2


def _length_error(field: str, value: str, min_len: int | None, max_len: int) -> dict[str, Any] | None:
    length = _utf16_length(_java_trim(value))
    if (min_len is not None and length < min_len) or length > max_len:
        message = "error-invalid-length" if min_len is not None else "error-invalid-length-too-long"
        return {"field": field, "errorMessage": message, "params": [field, min_len, max_len]}
    return None


def _email_valid(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain) and len(local) <= EMAIL_LOCAL_MAX and not any(c.isspace() for c in value)


def profile_errors(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The default profile's refusals of the root attributes present (non-empty) in ``rep``."""
    errors: list[dict[str, Any]] = []
    values = {key: rep.get(key) for key in ("username", "email", "firstName", "lastName")}
    present = {key: str(v) for key, v in values.items() if v is not None and str(v) != ""}
    if "username" in present:
        error = _length_error("username", present["username"], USERNAME_MIN, MAX_LENGTH)
        errors += [error] if error else []
    if "email" in present:
        if not _email_valid(present["email"]):
            errors.append({"field": "email", "errorMessage": "error-invalid-email",
                           "params": ["email", present["email"]]})
        error = _length_error("email", present["email"], None, MAX_LENGTH)
        errors += [error] if error else []
    for field in ("firstName", "lastName"):
        if field in present:
            error = _length_error(field, present[field], None, MAX_LENGTH)
            errors += [error] if error else []
            if _PERSON_NAME_BAD.search(present[field]):
                errors.append({"field": field, "errorMessage": "error-person-name-invalid-character",
                               "params": [field]})
    return errors


def validate_profile(rep: dict[str, Any]) -> None:
    """Raise Keycloak's 400 for a representation the default user profile refuses."""
    errors = profile_errors(rep)
    if len(errors) == 1:
        raise StoreError(400, errors[0])
    if errors:
        raise StoreError(400, {"errors": errors})
