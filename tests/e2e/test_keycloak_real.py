"""The shared account scenarios against a real Keycloak (testcontainers), wherever Docker runs.

Keycloak runs on its own PostgreSQL (both containers on one Docker network), so the test also
checks that a real Keycloak writes accounts into its tables the way the stand-in does: that is
what the engine's capture reads. The realm is created through the Admin API with the user
profile's unmanaged attributes enabled (the engine syncs custom attributes, which Keycloak 24+
drops otherwise) and the master realm's default settings otherwise.

The over-long-field answers (HTTP 400 naming the field, ``over_long_fields`` and
``OVER_LONG_FIRST_NAME_BODY``) are checked here too, so the stand-in's user-profile validation is held
to the real server's wherever Docker exists.

The operator console's browser login (``authorization_code_flow``, ``authorization_request_errors``) runs
against the public client ``platsync-console`` registered here: standard flow, PKCE optional (Keycloak's
default), redirect URIs ``http://127.0.0.1:8765/*`` and the same for post-logout redirects (``+``). The
stand-in accepts any client id on loopback redirect URIs instead.

Skipped, with the reason, where no Docker engine is reachable (as on the development machines).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from keycloak import KeycloakAdmin

from tests.support import keycloak_oidc_scenarios as oidc_sc
from tests.support import keycloak_scenarios as sc
from tests.support.docker import docker_unavailable_reason
from tests.support.oidc_browser import CONSOLE_CLIENT, CONSOLE_REDIRECT_PATTERN

pytestmark = pytest.mark.e2e

KEYCLOAK_IMAGE = "quay.io/keycloak/keycloak:26.0.7"
POSTGRES_IMAGE = "postgres:16.4-alpine"
REALM = "plat"
ADMIN_USER = "platsync-admin"
ADMIN_PASSWORD = f"adm-{uuid.uuid4().hex}"
DB_USER, DB_PASSWORD = "keycloak", f"db-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class RealKeycloak:
    """A running Keycloak and the libpq DSN of its database."""

    url: str
    dsn: str

    def args(self) -> tuple[str, str, str, str]:
        return self.url, REALM, ADMIN_USER, ADMIN_PASSWORD


def create_realm(url: str) -> None:
    """The synced realm, with unmanaged user-profile attributes enabled and the operator console's client."""
    admin = KeycloakAdmin(server_url=url.rstrip("/") + "/", username=ADMIN_USER, password=ADMIN_PASSWORD,
                          realm_name="master", user_realm_name="master")
    admin.create_realm({"realm": REALM, "enabled": True, "sslRequired": "none"}, skip_exists=True)
    admin.change_current_realm(REALM)
    profile = admin.get_realm_users_profile()
    profile["unmanagedAttributePolicy"] = "ENABLED"
    admin.update_realm_users_profile(profile)
    admin.create_client({"clientId": CONSOLE_CLIENT, "protocol": "openid-connect", "publicClient": True,
                         "standardFlowEnabled": True, "directAccessGrantsEnabled": False,
                         "redirectUris": [CONSOLE_REDIRECT_PATTERN],
                         "attributes": {"post.logout.redirect.uris": "+"}}, skip_exists=True)


@pytest.fixture(scope="module")
def real_keycloak() -> Iterator[RealKeycloak]:
    reason = docker_unavailable_reason(f"the real-Keycloak scenarios ({KEYCLOAK_IMAGE}) run")
    if reason is not None:
        pytest.skip(reason)
    from testcontainers.community.keycloak import KeycloakContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.network import Network

    with Network() as network:
        database = (PostgresContainer(POSTGRES_IMAGE, username=DB_USER, password=DB_PASSWORD, dbname="keycloak",
                                      driver=None)
                    .with_network(network).with_network_aliases("kcdb"))
        with database:
            keycloak = (KeycloakContainer(KEYCLOAK_IMAGE, username=ADMIN_USER, password=ADMIN_PASSWORD)
                        .with_network(network)
                        .with_env("KC_DB", "postgres")
                        .with_env("KC_DB_URL", "jdbc:postgresql://kcdb:5432/keycloak")
                        .with_env("KC_DB_USERNAME", DB_USER)
                        .with_env("KC_DB_PASSWORD", DB_PASSWORD))
            with keycloak:
                url = keycloak.get_url()
                create_realm(url)
                dsn = (f"host={database.get_container_host_ip()} port={database.get_exposed_port(5432)} "
                       f"dbname=keycloak user={DB_USER} password={DB_PASSWORD}")
                yield RealKeycloak(url, dsn)


@pytest.mark.parametrize("scenario", [*sc.ALL_SCENARIOS, *oidc_sc.OIDC_SCENARIOS], ids=lambda f: f.__name__)
def test_scenario(real_keycloak: RealKeycloak, scenario: Callable[[str, str, str, str], None]) -> None:
    scenario(*real_keycloak.args())


def test_real_keycloak_writes_accounts_into_its_tables_like_the_standin(real_keycloak: RealKeycloak) -> None:
    sc.table_layout(*real_keycloak.args(), real_keycloak.dsn)


def test_real_keycloak_refuses_an_over_long_field_exactly_as_the_standin_does(real_keycloak: RealKeycloak) -> None:
    # The stand-in answers this body (test_keycloak_standin.py); here the real server is held to it.
    # Every over-long field's answer is also checked by the shared scenario over_long_fields.
    assert sc.over_long_first_name(*real_keycloak.args()) == (400, sc.OVER_LONG_FIRST_NAME_BODY)


def test_real_keycloak_rehashes_an_imported_hash_on_login(real_keycloak: RealKeycloak) -> None:
    result = sc.rehash_on_login(*real_keycloak.args())
    assert (result["before"]["algorithm"], result["before"]["hashIterations"]) == ("pbkdf2-sha256", 27500)
    assert result["after"]["algorithm"] == "argon2"  # Keycloak 25+'s default outside FIPS mode
