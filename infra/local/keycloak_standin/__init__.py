"""An embedded stand-in for Keycloak: the OIDC endpoints (token, userinfo, browser login with the
authorization code flow and PKCE, logout) and the Admin REST user endpoints (docs/keycloak.md).

No Keycloak server can be installed on the development machines, so the embedded stack runs
this aiohttp server instead (``python -m infra.local.keycloak_standin --side local``). It keeps
its accounts in Keycloak's own tables (``connectors.keycloak.schema``) in the side's PostgreSQL
database ``keycloak``, so the engine captures them exactly as it captures a real Keycloak.
``tests/e2e/test_keycloak_real.py`` runs the same scenarios against a real Keycloak container.

The realms it serves behave like Keycloak 26 realms with the user profile's unmanaged attributes
enabled (``unmanagedAttributePolicy: ENABLED``, which the engine needs to sync custom attributes)
and the VERIFY_PROFILE required action enabled (Keycloak's default for new realms).
"""

from __future__ import annotations

import urllib.error
import urllib.request

from streams.runtime.settings import Settings


def standin_url(settings: Settings, side: str) -> str:
    """Base URL of a side's stand-in (on ``settings.host``, whatever ``keycloak_<side>_url`` says)."""
    return f"http://{settings.host}:{settings.keycloak_port(side)}"


def standin_ready(settings: Settings, side: str, timeout_s: float = 1.0) -> bool:
    """True once the side's stand-in answers ``GET /realms/master`` with 200."""
    try:
        with urllib.request.urlopen(f"{standin_url(settings, side)}/realms/master", timeout=timeout_s) as resp:  # noqa: S310
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
