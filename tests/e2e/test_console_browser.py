"""The operator console in a real headless Chromium, against the session's running stack.

The console process (``python -m streams.console.server``) runs against the stack's settings file; an operator
of the hospital's Keycloak realm (the stand-in) logs in through the real login form, and the browser does what
an operator does during an outage (seed 003): watches both nodes, cuts the link and sees the hospital turn to
emergency, while the hospital keeps entering records; restores the link; in the difference list selects rows
and copies them (a record a cloud store refused while the link was down arrives once the store is fixed);
reviews a conflict made during the cut and resolves it; retries a dead letter; switches a node's mode by hand
and back; switches the page to English; finds every action in the audit log; logs out. Without a session the
API answers 401 and no data.

Other tests share the stack: it may start in ``recovery`` (open conflicts of earlier tests), so the test waits
for the changes it causes instead of assuming a start mode, and leaves the link up, no mode override, nothing
of its own pending, and both sides synced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.apply.mode_state import read_override, set_override
from streams.core.model import SIDES
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.console_browser import (
    attribute_of,
    by_testid,
    checked,
    chromium,
    clicked,
    displayed,
    require_chromium,
    save_screen,
    screens_on_failure,
    text_of,
)
from tests.support.console_process import realm_user, running_console
from tests.support.helpers import eventually, platsync

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]  # it cuts the embedded stack's link

API_GETS = ("/api/session", "/api/nodes", "/api/recovery", "/api/conflicts", "/api/conflicts/0123456789abcdef",
            "/api/dead-letters", "/api/audit")
API_POSTS = ("/api/mode", "/api/link", "/api/recovery/copy", "/api/conflicts/0123456789abcdef/resolve",
             "/api/dead-letters/retry")


@dataclass
class Console:
    """A running console process and the operator who may use it."""

    url: str
    username: str
    password: str
    log: Path


@pytest.fixture(scope="module")
def console(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The console on a free port, with a new operator in the hospital realm; stopped (and the user removed) after."""
    require_chromium()
    s = stack.settings
    with realm_user(s, "operator", last_name="運用") as (username, password), \
            running_console(s, [username], tmp_path_factory.mktemp("console")) as running:
        yield Console(running.url, username, password, running.log)


@pytest.fixture()
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium; a screenshot and the page source are saved in ``<tmp>/console-screens`` on failure."""
    with chromium() as driver, screens_on_failure(driver, request, tmp_path / "console-screens"):
        yield driver


# ---- the stores, the CLI ---------------------------------------------------------------------------

def row(s: Settings, side: str, table: str, row_id: str) -> tuple | None:
    with psycopg.connect(libpq_dsn(s, side, "meta")) as conn:
        return conn.execute(f"SELECT id, version FROM {table} WHERE id = %s", (row_id,)).fetchone()  # noqa: S608


def cli_json(s: Settings, *args: str) -> Any:
    result = platsync(s, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def link_up(s: Settings) -> bool | None:
    return cli_json(s, "link", "status").get("up")


def restore_stack(s: Settings, constraint: str, conflict_rows: set[str]) -> None:
    """Link up, no override, the test's constraint dropped and its conflicts reviewed, both sides synced."""
    if link_up(s) is False:
        restored = platsync(s, "link", "up")
        assert restored.returncode == 0, restored.stdout + restored.stderr
    for side in SIDES:
        if read_override(s, side) is not None:
            set_override(s, side, None, note="console browser test: back to automatic")
    with psycopg.connect(libpq_dsn(s, "remote", "meta"), autocommit=True) as conn:
        conn.execute(f"ALTER TABLE staff DROP CONSTRAINT IF EXISTS {constraint}")
    assert wait_synced(s, 120) == []
    for conflict in cli_json(s, "conflicts", "list"):
        if conflict["status"] == "open" and conflict["row_id"] in conflict_rows:
            platsync(s, "conflicts", "resolve", conflict["conflict_id"], "--note", "console browser test")


# ---- the page --------------------------------------------------------------------------------------

def confirm(driver: Any, button: str, note: str | None = None) -> None:
    """Click ``button`` and accept the page's own confirmation dialog (with an optional note)."""
    eventually(lambda: clicked(driver, button), f"{button} clickable", 30)
    eventually(lambda: displayed(driver, "confirm-ok"), "the confirmation dialog", 10)
    if note is not None:
        by_testid(driver, "confirm-note").send_keys(note)
    eventually(lambda: clicked(driver, "confirm-ok"), "the dialog's confirm button", 10)
    eventually(lambda: not displayed(driver, "confirm-dialog"), "the dialog closed", 10)


def mode_of(driver: Any, node: str) -> str | None:
    return text_of(driver, f"node-{node}-mode")


def log_in(driver: Any, console: Console) -> None:
    driver.get(console.url)
    eventually(lambda: clicked(driver, "login-link"), "the console's login prompt", 20)
    eventually(lambda: driver.find_elements("id", "kc-form-login"), "Keycloak's login form (kc-form-login)", 20)
    driver.find_element("id", "username").send_keys(console.username)
    driver.find_element("id", "password").send_keys(console.password)
    driver.find_element("id", "kc-login").click()
    eventually(lambda: text_of(driver, "user-name") not in (None, ""), "the signed-in user's name", 20)


def test_an_operator_runs_an_outage_from_the_console(stack: Stack, console: Console, browser: Any,
                                                    tmp_path: Path) -> None:
    s, d = stack.settings, browser
    tag = uuid.uuid4().hex[:8]
    role, constraint = f"blocked-{tag}", f"console_blocked_{tag}"
    conflict_rows: set[str] = set()
    try:
        log_in(d, console)
        shown_user = f"{text_of(d, 'user-name')} {text_of(d, 'user-username')}"
        assert console.username in shown_user or "花子" in shown_user, shown_user
        assert text_of(d, "tab-recovery") == "差分コピーツール"  # Japanese by default
        for node in SIDES:
            eventually(lambda n=node: mode_of(d, n) in ("normal", "emergency", "recovery"), f"the {node} node's card")
        eventually(lambda: attribute_of(d, "link-state", "data-up") == "true", "the link shown up", 30)
        # Out of any earlier emergency, so that the cut opens a new one (recovery is fine).
        eventually(lambda: {mode_of(d, n) for n in SIDES} <= {"normal", "recovery"}, "both nodes out of emergency")

        # Before the cut: a document on both sides (for a conflict), and a cloud store that refuses some staff.
        with ReferenceApi(s, "local") as api:
            (base_doc,) = api.call("PRV_DOC_006", {"patient_id": "p-console", "doc_type": "slip", "title": "base",
                                                   "media_type": "text/plain", "content_text": "base",
                                                   "signed_by": "dr"})["written"]["meta"]["documents"]
        with psycopg.connect(libpq_dsn(s, "remote", "meta"), autocommit=True) as conn:
            conn.execute(f"ALTER TABLE staff ADD CONSTRAINT {constraint} CHECK (role <> '{role}')")
        assert wait_synced(s, 90) == []
        assert row(s, "remote", "documents", base_doc) is not None

        # Cut the link from the page; the hospital turns to emergency (X-Hybridmode emergency-fa).
        confirm(d, "link-down", note=f"drill {tag}")
        eventually(lambda: attribute_of(d, "link-state", "data-up") == "false", "the link shown down", 30)
        eventually(lambda: mode_of(d, "local") == "emergency", "the hospital's card in emergency",
                   s.mode_peer_timeout_s + 30)
        assert text_of(d, "node-local-hybridmode") == "emergency-fa"
        save_screen(d, tmp_path / "console-screens", "01-link-cut")

        # During the cut the hospital keeps working: a document, two staff the cloud will refuse, and an edit of
        # the base document on both sides (a conflict once the link is back).
        with ReferenceApi(s, "local") as local, ReferenceApi(s, "remote") as remote:
            (cut_doc,) = local.call("PRV_DOC_006", {"patient_id": "p-console", "doc_type": "slip",
                                                    "title": f"entered during the cut {tag}",
                                                    "media_type": "text/plain", "content_text": "during the cut",
                                                    "signed_by": "dr"})["written"]["meta"]["documents"]
            staff = [local.call("PRV_STF_001", {"staff_code": f"console-{tag}-{i}", "display_name": f"看護師{i}",
                                                "role": role})["written"]["meta"]["staff"][0] for i in (1, 2)]
            for side, api in (("local", local), ("remote", remote)):
                api.call("PRV_DOC_007", {"documents": [{"id": base_doc, "title": f"edited on {side} {tag}",
                                                        "content_text": f"{side} text", "signed_by": "dr"}]})
        with psycopg.connect(libpq_dsn(s, "local", "meta")) as conn:  # its signed record conflicts too
            (record_id,) = conn.execute("SELECT record_id FROM documents WHERE id = %s", (base_doc,)).fetchone()
        conflict_rows.update((base_doc, str(record_id)))
        assert row(s, "remote", "documents", cut_doc) is None  # nothing crosses a cut link

        # Restore the link from the page; everything the cloud accepts arrives.
        confirm(d, "link-up", note=f"drill {tag} over")
        eventually(lambda: attribute_of(d, "link-state", "data-up") == "true", "the link shown up again", 90)
        assert wait_synced(s, 120) == []
        assert row(s, "remote", "documents", cut_doc) == row(s, "local", "documents", cut_doc) is not None
        assert all(row(s, "remote", "staff", sid) is None for sid in staff)  # refused: dead letters

        # The difference list: the cut's records, the refused staff not copyable; fix the store, copy selected.
        eventually(lambda: clicked(d, "tab-recovery"), "the difference list's tab")
        doc_entry, staff_entry = f"local/meta/documents/{cut_doc}", f"local/meta/staff/{staff[0]}"
        eventually(lambda: attribute_of(d, f"recovery-row-{doc_entry}", "data-status") == "copied"
                   and attribute_of(d, f"recovery-row-{staff_entry}", "data-status") == "not_copyable",
                   "the cut's document (copied) and the refused staff (not copyable) in the difference list", 60)
        shown = text_of(d, f"recovery-row-{staff_entry}") or ""
        assert constraint in shown and role not in shown, shown  # the store's error, the row's values masked
        with psycopg.connect(libpq_dsn(s, "remote", "meta"), autocommit=True) as conn:  # the operator's fix
            conn.execute(f"ALTER TABLE staff DROP CONSTRAINT {constraint}")
        for entry in (staff_entry, doc_entry):
            eventually(lambda e=entry: checked(d, f"recovery-select-{e}"), f"{entry} selected", 20)
        confirm(d, "recovery-copy")
        eventually(lambda: attribute_of(d, f"recovery-outcome-{staff_entry}", "data-outcome") == "retried",
                   "the refused staff's outcome: its dead letter retried", 60)
        eventually(lambda: attribute_of(d, f"recovery-outcome-{doc_entry}", "data-outcome") == "already_copied",
                   "the document's outcome: already copied", 10)
        save_screen(d, tmp_path / "console-screens", "02-copied")
        eventually(lambda: row(s, "remote", "staff", staff[0]) == row(s, "local", "staff", staff[0]),
                   "the copied staff record in the cloud's store", 60)

        # Dead letters: the second refused staff is retried from the page.
        # (A letter's key is its message's: the capture may batch the cut's transactions into one message.)
        listed = cli_json(s, "dlq", "list", "--route", "local_to_remote", "--status", "pending")
        letters = [x for x in listed if constraint in x["error"]]
        assert len(letters) == 1, (staff, [(x["id"], x["key"], x["kind"], x["status"]) for x in listed][-10:])
        letter = letters[0]["id"]
        eventually(lambda: clicked(d, "tab-dlq"), "the dead letters' tab")
        eventually(lambda: attribute_of(d, f"dlq-row-{letter}", "data-status") == "pending", "the dead letter listed",
                   30)
        shown_letter = text_of(d, f"dlq-row-{letter}") or ""
        assert constraint in shown_letter and "看護師" not in shown_letter  # the refused row's values are redacted
        eventually(lambda: checked(d, f"dlq-select-{letter}"), "the dead letter selected", 20)
        confirm(d, "dlq-retry")
        eventually(lambda: attribute_of(d, f"dlq-status-{letter}", "data-status") == "retried",
                   "the dead letter marked retried", 30)
        eventually(lambda: row(s, "remote", "staff", staff[1]) == row(s, "local", "staff", staff[1]),
                   "the retried staff record in the cloud's store", 60)
        assert any(x["id"] == letter and x["status"] == "retried"
                   for x in cli_json(s, "dlq", "list", "--route", "local_to_remote"))

        # The conflict made during the cut: both versions side by side, the differing title marked; resolve it.
        mine = [c for c in cli_json(s, "conflicts", "list") if c["row_id"] == base_doc and c["store"] == "meta"]
        assert len(mine) == 1, mine
        conflict = mine[0]["conflict_id"]
        eventually(lambda: clicked(d, "tab-conflicts"), "the conflicts' tab")
        eventually(lambda: clicked(d, f"conflict-row-{conflict}"), "the conflict listed", 30)
        eventually(lambda: attribute_of(d, "conflict-detail", "data-conflict") == conflict, "the conflict's details")
        assert "differs" in (attribute_of(d, "conflict-field-title", "class") or "")
        assert {text_of(d, "conflict-local-title"), text_of(d, "conflict-remote-title")} == {
            f"edited on local {tag}", f"edited on remote {tag}"}
        save_screen(d, tmp_path / "console-screens", "03-conflict")
        by_testid(d, "conflict-note").send_keys(f"checked with the ward {tag}")
        confirm(d, "conflict-resolve")
        eventually(lambda: attribute_of(d, "conflict-detail", "data-status") == "resolved",
                   "the conflict shown resolved", 30)
        resolved = {c["conflict_id"]: c for c in cli_json(s, "conflicts", "list", "--status", "resolved")}
        assert conflict in resolved and f"checked with the ward {tag}" in (resolved[conflict]["resolution"] or "")

        # A mode switched by hand from the page, then back to automatic.
        now = mode_of(d, "local")
        target = "normal" if now == "recovery" else "recovery"
        confirm(d, f"mode-local-{target}", note=f"drill {tag}")
        eventually(lambda: mode_of(d, "local") == target and attribute_of(d, "node-local", "data-override") == "true",
                   f"the hospital in {target} by hand", 20)
        confirm(d, "mode-local-automatic")
        eventually(lambda: attribute_of(d, "node-local", "data-override") == "false", "the hospital back to automatic",
                   20)
        assert read_override(s, "local") is None

        # English labels, kept across a reload.
        eventually(lambda: clicked(d, "lang-toggle"), "the language toggle")
        eventually(lambda: text_of(d, "tab-recovery") == "Difference copy tool", "English labels", 10)
        d.refresh()
        eventually(lambda: text_of(d, "tab-audit") == "Audit log", "English kept after a reload", 20)

        # The audit log lists the actions, newest first.
        eventually(lambda: clicked(d, "tab-audit"), "the audit log's tab")
        wanted = ("login", "link", "copy", "retry", "resolve", "mode")

        def audited() -> bool:
            actions = " ".join(e.get_attribute("data-action") or ""
                               for e in d.find_elements("css selector", '[data-testid^="audit-row-"]'))
            return all(a in actions for a in wanted)

        eventually(audited, f"the audit log listing {wanted}", 20)
        save_screen(d, tmp_path / "console-screens", "04-audit")
        first = attribute_of(d, "audit-row-0", "data-action") or ""
        assert "mode" in first, first  # newest first: the last action was a mode switch

        # Log out: the page asks for a login again.
        eventually(lambda: clicked(d, "logout"), "the logout button")
        # The logout is a form post and redirects through Keycloak: loading the page before it ended would cancel it.
        eventually(lambda: "/logged-out" in d.current_url, "the logout's end (the logged-out page)", 20)
        d.get(console.url)
        eventually(lambda: displayed(d, "login-prompt"), "the login prompt after logout", 20)
    finally:
        restore_stack(s, constraint, conflict_rows)


def test_without_a_session_the_api_answers_401_and_no_data(stack: Stack, console: Console) -> None:
    for path in API_GETS:
        answer = requests.get(console.url + path, timeout=10)
        assert answer.status_code == 401, (path, answer.status_code, answer.text[:300])
        doc = answer.json()
        assert doc["error"] == "login_required" and doc.get("login") == "/login", (path, doc)
        assert set(doc) <= {"error", "message", "login"}, (path, doc)
    for path in API_POSTS:
        answer = requests.post(console.url + path, json={"confirm": True, "action": "down"}, timeout=10,
                               cookies={"platsync_console": "forged-" + uuid.uuid4().hex},
                               headers={"X-CSRF-Token": "forged"})
        assert answer.status_code == 401, (path, answer.status_code, answer.text[:300])
    assert link_up(stack.settings) is not False  # the forged "link down" did nothing
    page = requests.get(console.url + "/", timeout=10)
    assert page.status_code == 200 and "default-src 'self'" in page.headers.get("Content-Security-Policy", "")
