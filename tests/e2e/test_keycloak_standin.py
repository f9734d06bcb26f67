"""The Keycloak stand-in, as a real subprocess on real PostgreSQL, driven by the real python-keycloak.

Every shared scenario (``tests/support/keycloak_scenarios.py``, also run against a real Keycloak
in ``test_keycloak_real.py``) runs here, plus what only the stand-in can show: the accounts land
in Keycloak's own tables exactly as Keycloak writes them, an expired token is a 401 the clients
recover from, error bodies are Keycloak's, and the request log never holds a password or a hash.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from connectors.keycloak.admin import KeycloakAccounts, login
from connectors.reference_api import payloads as p
from connectors.reference_api.accounts_api import create_staff_account, update_account
from connectors.reference_api.errors import ApiError
from infra.local.databases import postgres_instance
from infra.local.keycloak_standin import standin_ready, standin_url
from infra.local.process import ProcessSpec, free_port, log_path, start_process, stop_process, wait_until
from infra.local.stack import write_settings_file
from streams.runtime.connections import keycloak_db_dsn
from streams.runtime.settings import Settings
from tests.support import keycloak_oidc_scenarios as oidc_sc
from tests.support import keycloak_scenarios as sc
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir, running_postgres

pytestmark = pytest.mark.e2e


def standin_spec(settings: Settings, side: str, config: Path) -> ProcessSpec:
    """``python -m infra.local.keycloak_standin`` for ``side``."""
    return ProcessSpec(name=f"keycloak-{side}", argv=[sys.executable, "-m", "infra.local.keycloak_standin",
                                                      "--side", side, "--config", str(config),
                                                      "--data-dir", str(settings.data_dir)],
                       cwd=Path(__file__).resolve().parents[2])


@dataclasses.dataclass(frozen=True)
class Standins:
    """Two stand-ins: ``local`` with the default token TTL, ``remote`` with a 2 s TTL."""

    settings: Settings

    def url(self, side: str) -> str:
        return standin_url(self.settings, side)

    def args(self, side: str) -> tuple[str, str, str, str]:
        s = self.settings
        return self.url(side), s.keycloak_realm, s.keycloak_admin_user, s.keycloak_admin_password

    def accounts(self, side: str) -> KeycloakAccounts:
        return sc.accounts(*self.args(side))

    def db(self, side: str) -> psycopg.Connection[Any]:
        return psycopg.connect(keycloak_db_dsn(self.settings, side), autocommit=True)

    def log(self, side: str) -> str:
        return log_path(self.settings.data_dir, f"keycloak-{side}").read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def standins() -> Iterator[Standins]:
    data_dir = make_data_dir("platsync-kc-")
    started: list[str] = []
    try:
        settings = isolated_settings(data_dir, keycloak_admin_password=f"adm-{uuid.uuid4().hex}")  # free ports
        with running_postgres(settings):
            for side, ttl in (("local", 300), ("remote", 2)):
                postgres_instance(settings, side).ensure_databases(("keycloak",))
                config = write_settings_file(dataclasses.replace(settings, keycloak_token_ttl_s=ttl),
                                        data_dir / f"kc-{side}.toml")
                start_process(data_dir, standin_spec(settings, side, config))
                started.append(f"keycloak-{side}")
            for side in ("local", "remote"):
                wait_until(lambda side=side: standin_ready(settings, side), 60, f"Keycloak stand-in {side}",
                           log=log_path(data_dir, f"keycloak-{side}"))
            yield Standins(settings)
            for name in started:
                stop_process(data_dir, name)
    finally:
        for name in started:
            stop_process(data_dir, name)
        remove_data_dir(data_dir)


@pytest.mark.parametrize("scenario", [*sc.ALL_SCENARIOS, *oidc_sc.OIDC_SCENARIOS], ids=lambda f: f.__name__)
def test_scenario(standins: Standins, scenario: Callable[[str, str, str, str], None]) -> None:
    scenario(*standins.args("local"))


def test_accounts_are_stored_in_keycloaks_tables_as_keycloak_writes_them(standins: Standins) -> None:
    url, realm, admin_user, admin_password = standins.args("local")
    dsn = keycloak_db_dsn(standins.settings, "local")
    created = sc.table_layout(url, realm, admin_user, admin_password, dsn)  # shared with the real Keycloak test
    (cred,) = created["rows"]["credential"]
    secret, data = json.loads(cred["secret_data"]), json.loads(cred["credential_data"])
    # Keycloak 24's default hashing (Keycloak 25+ defaults to argon2 outside FIPS mode).
    assert list(secret) == ["value", "salt", "additionalParameters"] and secret["additionalParameters"] == {}
    assert data == {"hashIterations": 210000, "algorithm": "pbkdf2-sha512", "additionalParameters": {}}
    salt, value = base64.b64decode(secret["salt"]), base64.b64decode(secret["value"])
    assert len(salt) == 16
    assert value == hashlib.pbkdf2_hmac("sha512", created["password"].encode(), salt, 210000, 64)
    kc = standins.accounts("local")
    # UserResource.updateUserFromRep only adds actions that have a registered provider.
    odd = kc.create_user(sc.profile(sc.new_username("odd"), requiredActions=["NO_SUCH_ACTION", "UPDATE_PROFILE"]))
    with standins.db("local") as conn:
        assert [a["required_action"] for a in sc.account_rows(conn, odd)["action"]] == ["UPDATE_PROFILE"]
        admin = conn.execute("SELECT u.id FROM user_entity u JOIN realm r ON r.id = u.realm_id "
                             "WHERE r.name = 'master' AND u.username = %s", (admin_user,)).fetchone()
        assert admin is not None and sc.account_rows(conn, admin[0])["credential"]


def test_login_rehashes_a_password_that_misses_the_policy(standins: Standins) -> None:
    result = sc.rehash_on_login(*standins.args("local"))
    assert (result["before"]["algorithm"], result["before"]["hashIterations"]) == ("pbkdf2-sha256", 27500)
    assert (result["after"]["algorithm"], result["after"]["hashIterations"]) == ("pbkdf2-sha512", 210000)


def test_standin_specific_responses(standins: Standins) -> None:
    url, realm, admin_user, admin_password = standins.args("local")
    token_url = f"{url}/realms/{realm}/protocol/openid-connect/token"
    auth = {"Authorization": f"Bearer {login(url, 'master', admin_user, admin_password)['access_token']}"}
    users = f"{url}/admin/realms/{realm}/users"
    grant = requests.post(token_url, data={"grant_type": "client_credentials", "client_id": "admin-cli"}, timeout=10)
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    username, password = sc.new_username("raw"), sc.new_password()
    user_id = standins.accounts("local").create_user(sc.with_password(sc.profile(username), password))
    found = requests.get(users, params={"search": username[:12].upper(), "briefRepresentation": "true"},
                         headers=auth, timeout=10).json()
    assert [u["id"] for u in found] == [user_id] and "requiredActions" not in found[0]
    user_token = login(url, realm, username, password)["access_token"]
    forbidden = requests.get(users, headers={"Authorization": f"Bearer {user_token}"}, timeout=10)
    assert (forbidden.status_code, forbidden.json()) == (403, {"error": "HTTP 403 Forbidden"})
    renamed = requests.put(f"{users}/{user_id}", json={"username": "someone-else"}, headers=auth, timeout=10)
    assert renamed.status_code == 400 and renamed.json()["errorMessage"] == "error-user-attribute-read-only"


def test_expired_token_is_401_and_clients_recover(standins: Standins) -> None:
    url, realm, admin_user, admin_password = standins.args("remote")  # token TTL 2 s
    tokens = login(url, "master", admin_user, admin_password)
    assert tokens["expires_in"] == 2
    users = f"{url}/admin/realms/{realm}/users"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(users, headers=auth, timeout=10).status_code == 200
    kc = standins.accounts("remote")
    kc.check()
    time.sleep(2.5)
    expired = requests.get(users, headers=auth, timeout=10)
    assert (expired.status_code, expired.json()) == (401, {"error": "HTTP 401 Unauthorized"})
    assert kc.find_user(admin_user) is None  # python-keycloak renewed its expired token by itself
    # A token the client still believes valid but the server rejects (clock skew, restart):
    # python-keycloak gets a 401, refreshes and retries.
    kc.admin.connection.token = tokens
    lines_before = standins.log("remote").count("\n")
    assert isinstance(kc.list_users(), list)
    new_lines = standins.log("remote").splitlines()[lines_before:]
    assert any(" 401 " in line and "/admin/realms/" in line for line in new_lines), new_lines
    # A token and refresh token the server does not know at all (e.g. another server's): the
    # refresh is refused (400 invalid_grant), KeycloakAccounts logs in again and retries.
    kc.admin.connection.token = {"access_token": "not-a-token", "refresh_token": "not-either", "expires_in": 300}
    username = sc.new_username("ttl")
    user_id = kc.create_user(sc.profile(username))
    assert kc.get_user(user_id)["username"] == username.lower()


def test_hash_exported_from_one_side_logs_in_on_the_other(standins: Standins) -> None:
    local, remote = standins.accounts("local"), standins.accounts("remote")
    username, password = sc.new_username("x"), sc.new_password()
    source = local.create_user(sc.with_password(sc.profile(username), password))
    with standins.db("local") as conn:
        secret_data, credential_data = conn.execute(
            "SELECT secret_data, credential_data FROM credential WHERE user_id = %s AND type = 'password'",
            (source,)).fetchone() or ("", "")
    target = remote.create_user(sc.profile(username))
    remote.import_password_hash(target, secret_data, credential_data)
    assert sc.can_login(standins.url("remote"), standins.settings.keycloak_realm, username, password)
    with standins.db("remote") as conn:
        row = conn.execute("SELECT secret_data, credential_data FROM credential WHERE user_id = %s",
                           (target,)).fetchone()
    assert row == (secret_data, credential_data)  # stored byte for byte, as Keycloak imports it


def test_request_log_never_holds_a_password_or_hash(standins: Standins) -> None:
    kc = standins.accounts("local")
    username, password = sc.new_username("log"), sc.new_password()
    user_id = kc.create_user(sc.with_password(sc.profile(username), password))
    kc.set_password(user_id, password + "-new")
    assert sc.can_login(standins.url("local"), standins.settings.keycloak_realm, username, password + "-new")
    with standins.db("local") as conn:
        (secret_data,) = conn.execute("SELECT secret_data FROM credential WHERE user_id = %s", (user_id,)).fetchone()
    log = standins.log("local")
    secret = json.loads(secret_data)
    for needle in (password, password + "-new", secret["value"], secret["salt"],
                   standins.settings.keycloak_admin_password, standins.settings.pg_password + "@"):
        assert needle not in log
    assert f"PUT /admin/realms/{standins.settings.keycloak_realm}/users/{user_id}/reset-password 204" in log


def test_sigterm_stops_the_standin_with_exit_code_0(standins: Standins, tmp_path: Path) -> None:
    settings = standins.settings.with_node("local", keycloak_port=free_port())
    config = write_settings_file(settings, tmp_path / "kc.toml")
    proc = subprocess.Popen([sys.executable, "-m", "infra.local.keycloak_standin", "--side", "local",  # noqa: S603
                             "--config", str(config)], cwd=Path(__file__).resolve().parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: standin_ready(settings, "local") or proc.poll() is not None, 60, "stand-in")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


# -- issue 13, item 8: an over-long field is Keycloak's 400 naming the field, not a 500 taken for "unreachable" --

def test_the_default_user_profile_refuses_over_long_and_bad_fields_with_keycloaks_400(standins: Standins) -> None:
    url, realm, admin_user, admin_password = standins.args("local")
    auth = {"Authorization": f"Bearer {login(url, 'master', admin_user, admin_password)['access_token']}"}
    users = f"{url}/admin/realms/{realm}/users"
    email = "a" * 65 + "@hospital.example"  # a local part over EmailValidator's 64
    cases = [  # field, value, Keycloak's ErrorRepresentation (UserResource.validateUserProfile)
        ("firstName", "長" * 300, {"field": "firstName", "errorMessage": "error-invalid-length-too-long",
                                   "params": ["firstName", None, 255]}),
        ("lastName", "𠮷" * 128, {"field": "lastName", "errorMessage": "error-invalid-length-too-long",
                                  "params": ["lastName", None, 255]}),  # 256 UTF-16 code units, as Java counts
        ("username", "ab", {"field": "username", "errorMessage": "error-invalid-length",
                            "params": ["username", 3, 255]}),
        ("firstName", "PII-山田花子\u0000b", {"field": "firstName",
                                            "errorMessage": "error-person-name-invalid-character",
                                            "params": ["firstName"]}),
        ("email", email, {"field": "email", "errorMessage": "error-invalid-email", "params": ["email", email]}),
    ]
    for field, value, body in cases:
        username = sc.new_username("prof")
        refused = requests.post(users, json=sc.profile(username) | {field: value}, headers=auth, timeout=10)
        assert (refused.status_code, refused.json()) == (400, body), field
        assert standins.accounts("local").find_user(username) is None
    assert sc.over_long_first_name(url, realm, admin_user, admin_password) == (400, sc.OVER_LONG_FIRST_NAME_BODY)
    assert requests.post(users, json=sc.profile(sc.new_username("ok")) | {"firstName": "長" * 255},
                         headers=auth, timeout=10).status_code == 201
    assert "Uncaught server error" not in standins.log("local")


def test_connector_reports_a_refused_field_as_refused_without_the_value(standins: Standins) -> None:
    from connectors.keycloak.admin import KeycloakRejectedError

    kc = standins.accounts("local")
    name = "PII-" + "長" * 300
    with pytest.raises(KeycloakRejectedError) as info:
        kc.create_user(sc.profile(sc.new_username("conn")) | {"firstName": name, "lastName": name})
    assert info.value.status == 400
    assert {(f.field, f.message, f.limits) for f in info.value.field_errors} == {
        ("firstName", "error-invalid-length-too-long", (255,)), ("lastName", "error-invalid-length-too-long", (255,))}
    assert "PII" not in str(info.value) and "長長" not in str(info.value)
    with pytest.raises(KeycloakRejectedError) as bad_email:
        kc.create_user(sc.profile(sc.new_username("mail"), email="PII-" + "x" * 70 + "@hospital.example"))
    assert [(f.field, f.message) for f in bad_email.value.field_errors] == [("email", "error-invalid-email")]
    assert "PII" not in str(bad_email.value)  # Keycloak's params carry the address; the connector drops them


class FlakyProxy:
    """A reverse proxy in front of a stand-in that answers 503 to the next ``failures`` user creations."""

    def __init__(self, target: str) -> None:
        self.target, self.failures, self.seen = target, 0, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.rstrip("/").endswith("/users"):
                    proxy.seen += 1
                    if proxy.failures > 0:
                        proxy.failures -= 1
                        self.send_response(503)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", "2")
                        self.end_headers()
                        self.wfile.write(b"{}")
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(self.command, proxy.target + self.path, headers=headers, data=body,
                                          timeout=10, allow_redirects=False)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _relay  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def staff(username: str, **changes: Any) -> p.StaffCredentialsPayload:
    parsed = p.parse_staff_with_credentials({"staff_code": "S-9", "display_name": "佐藤", "role": "doctor",
                                             "username": username, "password": sc.new_password(),
                                             "email": f"{username.lower()}@hospital.example"})
    return dataclasses.replace(parsed, **changes)


def test_reference_api_tells_refused_from_unreachable_and_retries_a_transient_failure(standins: Standins) -> None:
    _url, realm, admin_user, admin_password = standins.args("local")
    direct = standins.accounts("local")
    # A 4xx is reported as what it is: the refused field, not "unreachable", and never the value.
    username = sc.new_username("stf3")
    with pytest.raises(ApiError) as refused:
        create_staff_account(direct, "local", staff(username, display_name="PII-" + "長" * 300))
    message = str(refused.value)
    assert "refused the account (HTTP 400)" in message and "firstName: error-invalid-length-too-long" in message
    assert "unreachable" not in message and "PII" not in message and username.lower() not in message.lower()
    assert direct.find_user(username) is None
    proxy = FlakyProxy(standins.url("local"))
    try:
        via_proxy = sc.accounts(proxy.url, realm, admin_user, admin_password)
        # A transient 5xx is retried (bounded) and the account is created once.
        proxy.failures = 2
        created = create_staff_account(via_proxy, "local", staff(username))
        assert proxy.seen == 3 and direct.find_user(username)["id"] == created
        # A 5xx that persists is reported unreachable after the bounded retry.
        proxy.failures, proxy.seen = 100, 0
        started = time.monotonic()
        with pytest.raises(ApiError, match=r"the local Keycloak is unreachable or failing \(HTTP 503, 4 attempts"):
            create_staff_account(via_proxy, "local", staff(sc.new_username("down")))
        assert proxy.seen == 4 and time.monotonic() - started < 10
    finally:
        proxy.close()
    # No connection at all: unreachable, after the same bounded retry.
    closed = sc.accounts(f"http://127.0.0.1:{free_port()}", realm, admin_user, admin_password)
    started = time.monotonic()
    with pytest.raises(ApiError, match=r"unreachable or failing \(no answer, 4 attempts"):
        create_staff_account(closed, "local", staff(sc.new_username("gone")))
    assert time.monotonic() - started < 10
    with pytest.raises(ApiError, match="unreachable or failing") as ath:
        update_account(closed, "local", p.parse_auth_update({"username": username, "enabled": False}))
    assert username.lower() not in str(ath.value).lower()
