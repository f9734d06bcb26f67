"""KeycloakAccountConverter over REAL Debezium records of Keycloak's account tables.

The fixtures (``tests/fixtures/debezium/keycloak_*.json``, see ``capture_keycloak_fixtures.py``)
were captured by the real Debezium engine while the Keycloak stand-in served python-keycloak's
Admin API calls; each one also holds the accounts ``read_accounts`` returned right after it.
:class:`FakeKeycloak` answers the converter's two callbacks from those recorded states: the
state of Keycloak after a batch is the recorded state after the batch's last scenario.
Expected LSNs, txIds and timestamps are read from the records, so a re-capture needs no edits.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from connectors.capture.envelope import EnvelopeError
from connectors.capture.keycloak_converter import KeycloakAccountConverter
from connectors.keycloak.accounts import Account, PasswordCredential, row_to_account
from connectors.keycloak.crypto import KeyRing, generate_key_spec
from streams.core.model import ChangeEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
NOW_MS = 1_800_000_000_000
RING = KeyRing.parse(generate_key_spec("k1"))
PROBE_ID = "00000000000000000042"
USERNAME = "fixture-staff-dr"
MASTER_USERNAME = "fixture-master-ops"
#: Capture order of the scenarios (capture_keycloak_fixtures.SCENARIOS).
CAPTURE_ORDER = ("keycloak_probe", "keycloak_create", "keycloak_password_reset", "keycloak_update",
                 "keycloak_revert", "keycloak_update_again", "keycloak_rewrite", "keycloak_delete",
                 "keycloak_master_user", "keycloak_master_user_delete")
COUNTERS = ("events", "echoes_dropped", "probes", "unchanged", "ignored")


# ---- the recorded fixtures -------------------------------------------------------------------

@cache
def load(name: str) -> dict[str, Any]:
    """One captured scenario: ``{"records": [{"destination", "key", "value"}], "accounts_after": {...}}``."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def records(spec: str) -> list[dict[str, str | None]]:
    """The records of ``name`` or of a slice of them, ``name[a:b]`` (a batch that split a transaction)."""
    match = re.fullmatch(r"(\w+)(?:\[(-?\d*):(-?\d*)\])?", spec)
    assert match, spec
    name, start, stop = match.groups()
    recs = load(name)["records"]
    if "[" not in spec:
        return recs
    return recs[int(start) if start else None:int(stop) if stop else None]


def payload(rec: dict[str, str | None]) -> dict[str, Any]:
    return json.loads(rec["value"] or "{}")


def touched_user(rec: dict[str, str | None]) -> str | None:
    """The user a record belongs to (``user_entity.id``, else the row's ``user_id``)."""
    p = payload(rec)
    image = p.get("after") or p.get("before") or {}
    return image.get("id" if (p.get("source") or {}).get("table") == "user_entity" else "user_id")


def account_from_json(doc: dict[str, Any]) -> Account:
    password = doc["password"]
    return Account(username=doc["username"], enabled=doc["enabled"], email=doc["email"],
                   email_verified=doc["email_verified"], first_name=doc["first_name"], last_name=doc["last_name"],
                   attributes=doc["attributes"], required_actions=tuple(doc["required_actions"]),
                   password=None if password is None else PasswordCredential(**password), deleted=doc["deleted"])


def state(name: str) -> dict[str, Account]:
    """The accounts ``read_accounts`` returned right after scenario ``name``."""
    return {uid: account_from_json(doc) for uid, doc in load(name)["accounts_after"].items()}


def user_id_of(name: str) -> str:
    (user_id,) = {touched_user(r) for r in records(name)}
    assert user_id
    return user_id


USER_ID = user_id_of("keycloak_create")
#: The synced realm's id, as Keycloak wrote it into the created user's row.
SYNCED_REALM_ID = next(payload(r)["after"]["realm_id"] for r in load("keycloak_create")["records"]
                       if payload(r)["source"]["table"] == "user_entity")
MASTER_ID = user_id_of("keycloak_master_user")
IDS = {USERNAME: USER_ID, MASTER_USERNAME: MASTER_ID}
DELETED = Account(username=USERNAME, enabled=False, deleted=True)


def account_after(name: str) -> Account:
    """The synced user's account after ``name`` (:data:`DELETED` once it is gone)."""
    return state(name).get(USER_ID, DELETED)


def fingerprint_after(name: str) -> str:
    return account_after(name).fingerprint()


# ---- the converter's callbacks ---------------------------------------------------------------

@dataclass
class FakeKeycloak:
    """``read_accounts`` and ``applied_fingerprints`` answered from the recorded states."""

    accounts: dict[str, Account] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)
    reads: list[list[str]] = field(default_factory=list)
    applied_asks: list[list[str]] = field(default_factory=list)

    def happen(self, spec: str) -> None:
        """Keycloak's tables now hold the state after the scenario of ``spec`` (its whole transaction)."""
        name = spec.split("[")[0]
        after = state(name)
        for rec in load(name)["records"]:
            uid = touched_user(rec)
            if uid is None:
                continue
            if uid in after:
                self.accounts[uid] = after[uid]
            else:
                self.accounts.pop(uid, None)

    def read_accounts(self, user_ids: list[str]) -> dict[str, Account]:
        self.reads.append(list(user_ids))
        return {uid: self.accounts[uid] for uid in user_ids if uid in self.accounts}

    def applied_fingerprints(self, usernames: list[str]) -> dict[str, tuple[str, str]]:
        """One apply per recorded fingerprint: its token is fixed for the apply's lifetime."""
        self.applied_asks.append(list(usernames))
        return {u: (fp, f"apply-of-{fp[:12]}") for u, fp in self.applied.items() if u in usernames}


def converter(kc: FakeKeycloak) -> KeycloakAccountConverter:
    return KeycloakAccountConverter("local", kc.read_accounts, kc.applied_fingerprints, RING,
                                    lambda: SYNCED_REALM_ID, clock=lambda: NOW_MS / 1000)


def run_batch(conv: KeycloakAccountConverter, kc: FakeKeycloak, specs: tuple[str, ...]) -> list[ChangeEvent]:
    """Feed the records of ``specs`` as one Debezium batch; return ``finish_batch``'s events."""
    for spec in specs:
        kc.happen(spec)
        for rec in records(spec):
            assert conv.convert(rec["key"], rec["value"]) == []
    return conv.finish_batch()


def counters(conv: KeycloakAccountConverter) -> dict[str, int]:
    return {name: getattr(conv, name) for name in COUNTERS}


# ---- expectations ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Exp:
    """An expected event: ``state`` names the fixture whose recorded account it carries (None: deleted)."""

    op: str
    api_id: str | None = None
    key: str = USERNAME
    state: str | None = None


def probe() -> Exp:
    return Exp("probe", None, PROBE_ID)


def expected_event(exp: Exp, batch: tuple[str, ...]) -> ChangeEvent:
    """The event without its row: positions from the batch's last record of that account (or probe)."""
    batch_records = [r for spec in batch for r in records(spec)]
    if exp.op == "probe":
        mine = [r for r in batch_records if (payload(r).get("message") or {}).get("prefix") == "platsync_probe"]
    else:
        mine = [r for r in batch_records if touched_user(r) == IDS[exp.key]]
    source = payload(mine[-1])["source"]
    lsn, txid, ts = source["lsn"], source["txId"], source["ts_ms"]
    if exp.op == "probe":
        return ChangeEvent(event_id=f"local.keycloak:{lsn}:probe", source_side="local", source_store="keycloak",
                           table="platsync_probe", op="probe", key=PROBE_ID, version=0, row=None, api_id=None,
                           call_id=None, origin_side="local", lsn=lsn, txid=txid, commit_ts_ms=ts,
                           captured_ts_ms=NOW_MS)
    return ChangeEvent(event_id=f"local.keycloak:{lsn}:{exp.key}", source_side="local", source_store="keycloak",
                       table="keycloak_account", op=exp.op, key=exp.key, version=lsn, row=None, api_id=exp.api_id,
                       call_id=None, origin_side="local", lsn=lsn, txid=txid, commit_ts_ms=ts, captured_ts_ms=NOW_MS)


def assert_events(got: list[ChangeEvent], expected: list[Exp], batch: tuple[str, ...]) -> None:
    # ``before`` (the base state) is checked by test_each_change_names_the_state_it_was_based_on.
    assert [dataclasses.replace(e, row=None, before=None) for e in got] == [expected_event(x, batch) for x in expected]
    for event, exp in zip(got, expected, strict=True):
        if exp.op == "probe":
            continue
        account = DELETED if exp.state is None else state(exp.state)[IDS[exp.key]]
        assert event.row is not None
        assert row_to_account(event.row, RING) == account  # the credential decrypts to the recorded hash
        assert event.row["fingerprint"] == account.fingerprint()
        assert event.row["deleted"] is (exp.state is None)


# ---- table: batches of real records -> events and counters -------------------------------------

Batch = tuple[tuple[str, ...], str | None, list[Exp]]  # (fixtures, state the sink just applied, events)

C_CREATE = Exp("c", "PRV_STF_003", USERNAME, "keycloak_create")
U_RESET = Exp("u", "PRV_ATH_001", USERNAME, "keycloak_password_reset")
U_UPDATE = Exp("u", "PRV_ATH_001", USERNAME, "keycloak_update")
U_REVERT = Exp("u", "PRV_ATH_001", USERNAME, "keycloak_revert")
U_AGAIN = Exp("u", "PRV_ATH_001", USERNAME, "keycloak_update_again")
D_DELETE = Exp("d", "PRV_ATH_001", USERNAME, None)

CASES: list[Any] = [
    pytest.param([(("keycloak_create",), None, [C_CREATE])], {"events": 1}, id="create"),
    pytest.param([(("keycloak_password_reset",), None, [U_RESET])], {"events": 1},
                 id="password-reset-of-a-user-not-seen-before"),
    pytest.param([(("keycloak_update",), None, [U_UPDATE])], {"events": 1}, id="update-attributes-and-enabled"),
    pytest.param([(("keycloak_delete",), None, [D_DELETE])], {"events": 1},
                 id="delete-username-from-the-before-image"),
    pytest.param([(("keycloak_create",), None, [C_CREATE]), (("keycloak_delete[:6]",), None, [D_DELETE]),
                  (("keycloak_delete[6:]",), None, [])], {"events": 2, "unchanged": 1},
                 id="delete-split-across-batches-username-from-the-cache"),
    pytest.param([(("keycloak_delete[:6]",), None, []), (("keycloak_delete[6:]",), None, [D_DELETE])],
                 {"events": 1, "ignored": 1}, id="delete-split-before-the-username-is-known"),
    pytest.param([(("keycloak_master_user_delete[:1]",), None, [])], {"ignored": 1},
                 id="credential-of-a-user-never-seen-is-ignored"),
    pytest.param([(("keycloak_probe",), None, [probe()])], {"events": 1, "probes": 1}, id="probe"),
    pytest.param([((name,), None, exp) for name, exp in (
        ("keycloak_probe", [probe()]), ("keycloak_create", [C_CREATE]), ("keycloak_password_reset", [U_RESET]),
        ("keycloak_update", [U_UPDATE]), ("keycloak_revert", [U_REVERT]), ("keycloak_update_again", [U_AGAIN]),
        ("keycloak_rewrite", []), ("keycloak_delete", [D_DELETE]))],
        {"events": 7, "probes": 1, "unchanged": 1}, id="lifecycle-one-batch-per-call"),
    pytest.param([(("keycloak_create", "keycloak_password_reset", "keycloak_update"), None,
                   [Exp("c", "PRV_STF_003", USERNAME, "keycloak_update")])], {"events": 1},
                 id="burst-in-one-batch-coalesces-into-one-event"),
    pytest.param([(("keycloak_create", "keycloak_probe"), None, [probe(), C_CREATE])], {"events": 2, "probes": 1},
                 id="events-sorted-by-lsn"),
    pytest.param([(("keycloak_create",), "keycloak_create", [])], {"echoes_dropped": 1}, id="echo-dropped"),
    pytest.param([(("keycloak_create",), None, [C_CREATE]), (("keycloak_password_reset",), None, [U_RESET]),
                  (("keycloak_update",), "keycloak_update", []), (("keycloak_revert",), "keycloak_update", [U_REVERT])],
                 {"events": 3, "echoes_dropped": 1}, id="after-an-echo-a-change-back-to-the-previous-state-is-sent"),
    pytest.param([(("keycloak_create",), None, [C_CREATE]), (("keycloak_create",), None, [])],
                 {"events": 1, "unchanged": 1}, id="redelivered-batch-is-unchanged"),
    pytest.param([(("keycloak_update_again",), None, [U_AGAIN]), (("keycloak_rewrite",), None, [])],
                 {"events": 1, "unchanged": 1}, id="rows-rewritten-without-change-are-unchanged"),
    pytest.param([(("keycloak_heartbeat",), None, [])], {"ignored": 2}, id="heartbeat-and-its-message-ignored"),
    pytest.param([(("keycloak_heartbeat", "keycloak_password_reset"), None, [U_RESET])], {"events": 1, "ignored": 2},
                 id="heartbeats-inside-a-batch-with-a-change"),
    pytest.param([(("keycloak_master_user",), None, [])], {"ignored": 1}, id="master-realm-user-created"),
    pytest.param([(("keycloak_master_user_delete",), None, [])], {"ignored": 1}, id="master-realm-user-deleted"),
    pytest.param([(("keycloak_master_user", "keycloak_password_reset"), None, [U_RESET])], {"events": 1, "ignored": 1},
                 id="master-realm-user-beside-a-synced-change"),
    pytest.param([(("keycloak_update",), "keycloak_update", []), (("keycloak_revert",), "keycloak_update", [U_REVERT]),
                  (("keycloak_update_again",), "keycloak_update", [U_AGAIN])], {"events": 2, "echoes_dropped": 1},
                 id="genuine-change-back-to-an-echoed-state-is-sent"),
]


@pytest.mark.parametrize(("batches", "expected_counters"), CASES)
def test_real_batches_give_events_and_counters(batches: list[Batch], expected_counters: dict[str, int]) -> None:
    kc = FakeKeycloak()
    conv = converter(kc)
    emitted: list[ChangeEvent] = []
    for specs, applied, expected in batches:
        kc.applied = {} if applied is None else {USERNAME: fingerprint_after(applied)}
        got = run_batch(conv, kc, specs)
        assert_events(got, expected, specs)
        emitted.extend(got)
    assert counters(conv) == {name: expected_counters.get(name, 0) for name in COUNTERS}
    assert conv.last_lsn == max((e.lsn for e in emitted), default=0)
    assert conv.last_commit_ts_ms == max((e.commit_ts_ms for e in emitted), default=0)


# ---- single behaviours -----------------------------------------------------------------------

def test_each_change_names_the_state_it_was_based_on_also_after_a_restart() -> None:
    kc = FakeKeycloak()
    conv = converter(kc)
    (created,) = run_batch(conv, kc, ("keycloak_create",))
    assert created.before is None  # nothing known before the account existed
    (reset,) = run_batch(conv, kc, ("keycloak_password_reset",))
    assert created.row is not None and reset.before == {"fingerprint": created.row["fingerprint"]}
    restarted = converter(kc)
    restarted.restore_markers(conv.markers_state())
    (update,) = run_batch(restarted, kc, ("keycloak_update",))
    assert reset.row is not None and update.before == {"fingerprint": reset.row["fingerprint"]}
    with pytest.raises(EnvelopeError, match="malformed"):
        converter(kc).restore_markers({"known": {USERNAME: 7}})


def test_create_reads_the_touched_user_once_and_asks_for_its_applied_fingerprint() -> None:
    kc = FakeKeycloak()
    (event,) = run_batch(converter(kc), kc, ("keycloak_create",))
    assert kc.reads == [[USER_ID]]  # 7 records of 4 tables, one user, one read
    assert kc.applied_asks == [[USERNAME]]
    assert event.version == payload(records("keycloak_create")[-1])["source"]["lsn"]
    first_lsn = payload(records("keycloak_create")[0])["source"]["lsn"]
    assert event.version > first_lsn  # the last change of the transaction, not its first


def test_created_account_is_the_one_registered_through_the_api() -> None:
    kc = FakeKeycloak()
    (event,) = run_batch(converter(kc), kc, ("keycloak_create",))
    assert event.row is not None
    account = row_to_account(event.row, RING)
    assert (account.username, account.enabled, account.email, account.first_name, account.last_name) == (
        USERNAME, True, "fixture.staff@hospital.example", "花子", "山田")
    assert account.required_actions == ("CONFIGURE_TOTP",)
    assert account.attributes["licenses"] == ["L-001", "L-002"]
    assert len(account.attributes["signature_note"][0]) > 255  # Keycloak's long_value column
    assert account.password is not None
    assert json.loads(account.password.credential_data)["algorithm"] == "pbkdf2-sha512"


def test_password_reset_changes_the_fingerprint_and_the_hash_travels_encrypted() -> None:
    kc = FakeKeycloak()
    conv = converter(kc)
    (created,) = run_batch(conv, kc, ("keycloak_create",))
    (reset,) = run_batch(conv, kc, ("keycloak_password_reset",))
    assert (reset.op, reset.api_id) == ("u", "PRV_ATH_001")
    assert created.row is not None and reset.row is not None
    assert reset.row["fingerprint"] != created.row["fingerprint"]
    before, after = account_after("keycloak_create"), account_after("keycloak_password_reset")
    assert before.password is not None and after.password is not None
    assert dataclasses.replace(after, password=before.password) == before  # only the password changed
    blob = reset.row["credential"]
    assert isinstance(blob, bytes)
    secret = json.loads(after.password.secret_data)
    for clear in (secret["value"], secret["salt"], after.password.secret_data):
        assert clear.encode() not in blob
    assert row_to_account(reset.row, RING).password == after.password


def test_delete_event_names_the_user_and_carries_no_credential() -> None:
    kc = FakeKeycloak()
    (event,) = run_batch(converter(kc), kc, ("keycloak_delete",))
    assert (event.op, event.key, event.table) == ("d", USERNAME, "keycloak_account")
    assert event.row is not None
    assert event.row["deleted"] is True and event.row["enabled"] is False and event.row["credential"] is None
    assert kc.reads == [[USER_ID]]  # read (absent: deleted), then named from the before-image


def test_probe_alone_reads_nothing_and_decodes_the_message_content() -> None:
    kc = FakeKeycloak()
    (event,) = run_batch(converter(kc), kc, ("keycloak_probe",))
    message = payload(records("keycloak_probe")[0])["message"]
    assert base64.b64decode(message["content"]).decode() == PROBE_ID == event.key
    assert kc.reads == [] and kc.applied_asks == []


def test_logical_message_with_another_prefix_is_ignored() -> None:
    rec = records("keycloak_probe")[0]
    value = payload(rec)
    value["message"]["prefix"] = "some_other_extension"
    kc = FakeKeycloak()
    conv = converter(kc)
    assert conv.convert(rec["key"], json.dumps(value)) == []
    assert conv.finish_batch() == []
    assert counters(conv) == {"events": 0, "echoes_dropped": 0, "probes": 0, "unchanged": 0, "ignored": 1}


def test_echo_of_a_deletion_is_dropped() -> None:
    kc = FakeKeycloak(applied={USERNAME: DELETED.fingerprint()})
    conv = converter(kc)
    assert run_batch(conv, kc, ("keycloak_delete",)) == []
    assert counters(conv) == {"events": 0, "echoes_dropped": 1, "probes": 0, "unchanged": 0, "ignored": 0}


def test_an_applied_fingerprint_of_another_state_is_no_echo() -> None:
    kc = FakeKeycloak(applied={USERNAME: fingerprint_after("keycloak_create")})
    conv = converter(kc)
    (event,) = run_batch(conv, kc, ("keycloak_password_reset",))
    assert event.row is not None and event.row["fingerprint"] == fingerprint_after("keycloak_password_reset")
    assert conv.echoes_dropped == 0


@pytest.mark.parametrize("value", [
    pytest.param(lambda v: v[: len(v) // 2], id="truncated-record"),
    pytest.param(lambda v: v.replace("{", "[", 1), id="broken-json"),
    pytest.param(lambda _v: "[]", id="json-array"),
    pytest.param(lambda _v: "null", id="json-null"),
    pytest.param(lambda _v: '"user_entity"', id="json-string"),
    pytest.param(lambda v: json.dumps({"payload": [json.loads(v)]}), id="payload-not-an-object"),
])
def test_malformed_records_raise_envelope_error(value: Any) -> None:
    rec = records("keycloak_create")[0]
    conv = converter(FakeKeycloak())
    with pytest.raises(EnvelopeError, match="keycloak capture"):
        conv.convert(rec["key"], value(rec["value"]))


def test_tombstone_is_skipped_without_counting() -> None:
    kc = FakeKeycloak()
    conv = converter(kc)
    assert conv.convert(records("keycloak_delete")[-1]["key"], None) == []
    assert conv.finish_batch() == [] and kc.reads == []
    assert counters(conv) == dict.fromkeys(COUNTERS, 0)


def test_schema_wrapped_envelope_is_unwrapped() -> None:
    """With ``schemas.enable=true`` Debezium wraps the envelope in ``{"schema", "payload"}``."""
    kc = FakeKeycloak()
    conv = converter(kc)
    kc.happen("keycloak_password_reset")
    (rec,) = records("keycloak_password_reset")
    wrapped = json.dumps({"schema": {"type": "struct"}, "payload": payload(rec)})
    assert conv.convert(rec["key"], wrapped) == []
    (event,) = conv.finish_batch()
    assert_events([event], [U_RESET], ("keycloak_password_reset",))


# ---- the fixtures themselves -----------------------------------------------------------------

SHAPES = {
    "keycloak_probe": [("", "m")],
    "keycloak_create": [("user_entity", "c")] + [("user_attribute", "c")] * 4
    + [("user_required_action", "c"), ("credential", "c")],
    "keycloak_password_reset": [("credential", "u")],
    "keycloak_update": [("user_entity", "u"), ("user_attribute", "d"), ("user_attribute", "c")],
    "keycloak_revert": [("user_entity", "u"), ("user_attribute", "d"), ("user_attribute", "c")],
    "keycloak_update_again": [("user_entity", "u"), ("user_attribute", "d"), ("user_attribute", "c")],
    "keycloak_rewrite": [("credential", "u")],
    "keycloak_delete": [("credential", "d")] + [("user_attribute", "d")] * 4
    + [("user_required_action", "d"), ("user_entity", "d")],
    "keycloak_master_user": [("user_entity", "c"), ("credential", "c")],
    "keycloak_master_user_delete": [("credential", "d"), ("user_entity", "d")],
}


@pytest.mark.parametrize("name", CAPTURE_ORDER)
def test_fixture_holds_one_real_transaction_of_keycloaks_tables(name: str) -> None:
    doc = load(name)
    assert (doc["scenario"], doc["side"], doc["store"]) == (name, "local", "keycloak")
    shapes = [((payload(r)["source"]["table"]), payload(r)["op"]) for r in doc["records"]]
    assert shapes == SHAPES[name]
    assert len({payload(r)["source"]["txId"] for r in doc["records"]}) == 1
    for rec in doc["records"]:
        assert rec["destination"].startswith("platsync.local.keycloak.")
        assert payload(rec)["source"]["db"] == "keycloak"


def test_fixtures_are_in_lsn_order_and_states_match_the_scenarios() -> None:
    lsns = [payload(r)["source"]["lsn"] for name in CAPTURE_ORDER for r in records(name)]
    assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns)
    assert account_after("keycloak_revert") == account_after("keycloak_password_reset")
    assert account_after("keycloak_update_again") == account_after("keycloak_update")
    assert account_after("keycloak_rewrite") == account_after("keycloak_update_again")
    assert account_after("keycloak_update").enabled is False
    assert account_after("keycloak_update").attributes["department"] == ["oncology"]
    assert len({fingerprint_after(n) for n in ("keycloak_create", "keycloak_password_reset", "keycloak_update")}) == 3
    for gone in ("keycloak_delete", "keycloak_master_user", "keycloak_master_user_delete", "keycloak_probe"):
        assert load(gone)["accounts_after"] == {}
    created = payload(records("keycloak_create")[0])["after"]
    assert created["username"] == account_after("keycloak_create").username == USERNAME
    credential = payload(records("keycloak_password_reset")[0])["after"]
    after = account_after("keycloak_password_reset")
    assert after.password == PasswordCredential(credential["secret_data"], credential["credential_data"])


def test_no_plaintext_password_in_any_fixture() -> None:
    """The capture script's passwords look like ``Pw-<24 hex>-9!``; none may be in a fixture."""
    for path in sorted(FIXTURES.glob("keycloak_*.json")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"Pw-[0-9a-f]{24}-9!", text), path.name
        assert '"value": "Pw-' not in text and '"temporary"' not in text, path.name
