"""The Keycloak halves of the reference APIs: PRV_STF_003's account and PRV_ATH_001.

The password goes only to the side's own Keycloak, which hashes it; it is never stored in
META, logged or returned. Each change is one Admin API request, so Keycloak applies it in one
transaction (the capture then sees a whole account, never half of one).
"""

from __future__ import annotations

from typing import Any

from connectors.keycloak.admin import KeycloakAccounts, KeycloakError, KeycloakUnavailableError, KeycloakUserExistsError
from connectors.reference_api import payloads as p
from connectors.reference_api.errors import ApiError


def create_staff_account(accounts: KeycloakAccounts, side: str, s: p.StaffCredentialsPayload) -> str:
    """Create the PRV_STF_003 account with its password; return its Keycloak id."""
    rep = {"username": s.username, "enabled": True, "email": s.email,
           "firstName": s.given_name or s.display_name, "lastName": s.family_name or s.display_name,
           "attributes": {"staff_code": [s.staff_code], "role": [s.role]},
           "credentials": [{"type": "password", "value": s.password, "temporary": False}]}
    try:
        return accounts.create_user(rep)
    except KeycloakUserExistsError:
        raise ApiError(f"PRV_STF_003: username {s.username!r} already has a Keycloak account") from None
    except KeycloakUnavailableError as exc:
        raise ApiError(f"PRV_STF_003: the {side} Keycloak is unreachable, nothing written: {exc}") from None
    except KeycloakError as exc:
        raise ApiError(f"PRV_STF_003: Keycloak refused the account: {exc}") from None


def update_account(accounts: KeycloakAccounts, side: str, a: p.AuthUpdatePayload) -> None:
    """Apply a PRV_ATH_001 change (password, enabled, required actions) in one request."""
    user = accounts.find_user(a.username)
    if user is None:
        raise ApiError(f"PRV_ATH_001: no Keycloak account {a.username!r} on the {side} side")
    rep: dict[str, Any] = {}
    if a.enabled is not None:
        rep["enabled"] = a.enabled
    if a.required_actions is not None:
        rep["requiredActions"] = list(a.required_actions)
    if a.password is not None:
        rep["credentials"] = [{"type": "password", "value": a.password, "temporary": a.temporary}]
    try:
        accounts.update_user(user["id"], rep)
    except KeycloakUnavailableError as exc:
        raise ApiError(f"PRV_ATH_001: the {side} Keycloak is unreachable, nothing changed: {exc}") from None
    except KeycloakError as exc:
        raise ApiError(f"PRV_ATH_001: Keycloak refused the change: {exc}") from None
