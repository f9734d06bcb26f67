"""Credential encryption and the account <-> change-event row mapping (no processes)."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from connectors.keycloak.accounts import Account, PasswordCredential, account_to_row, row_to_account
from connectors.keycloak.crypto import CredentialKeyError, KeyRing, generate_key_spec, load_or_create_key_file

SECRET = json.dumps({"value": "G4pkQxlaYGLOqaO4wDUgItslxTtvcg3l", "salt": "VaXa3H3OJXXujl+cRg66HA==",
                     "additionalParameters": {}})
DATA = json.dumps({"hashIterations": 210000, "algorithm": "pbkdf2-sha512", "additionalParameters": {}})
ACCOUNT = Account(username="dr-sato", enabled=True, email="sato@example.jp", first_name="一郎", last_name="佐藤",
                  attributes={"staff_code": ["S-1"], "roles": ["b", "a"]}, required_actions=("CONFIGURE_TOTP",),
                  password=PasswordCredential(SECRET, DATA))


def test_encrypt_decrypt_round_trip_and_no_plaintext_in_ciphertext() -> None:
    ring = KeyRing.parse(generate_key_spec("k1"))
    blob = ring.encrypt(SECRET.encode(), "p")
    assert ring.decrypt(blob, "p") == SECRET.encode()
    assert b"G4pkQxla" not in blob and b"VaXa3H3O" not in blob


def test_rotation_old_key_still_decrypts_new_key_encrypts() -> None:
    old = generate_key_spec("old")
    blob = KeyRing.parse(old).encrypt(b"x", "p")
    rotated = KeyRing.parse(f"{generate_key_spec('new')},{old}")
    assert rotated.decrypt(blob, "p") == b"x"
    assert b"new" in rotated.encrypt(b"x", "p")[:10]


def test_missing_key_tampering_and_wrong_purpose_are_refused() -> None:
    ring = KeyRing.parse(generate_key_spec("k1"))
    blob = ring.encrypt(b"secret", "p")
    with pytest.raises(CredentialKeyError, match="key ring lacks"):
        KeyRing.parse(generate_key_spec("k2")).decrypt(blob, "p")
    with pytest.raises(CredentialKeyError, match="failed authentication"):
        ring.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), "p")
    with pytest.raises(CredentialKeyError, match="failed authentication"):
        ring.decrypt(blob, "other-purpose")
    with pytest.raises(CredentialKeyError, match="not a PLAT Sync"):
        ring.decrypt(b"plain", "p")


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty"),
    ("nokey", "expected 'kid:base64key'"),
    ("k:!!!", "not valid base64"),
    ("k:AAAA", "32-byte key"),
])
def test_bad_key_specs_are_explained(spec: str, message: str) -> None:
    with pytest.raises(CredentialKeyError, match=message):
        KeyRing.parse(spec)


def test_duplicate_key_ids_are_refused() -> None:
    spec = generate_key_spec("k")
    with pytest.raises(CredentialKeyError, match="duplicate"):
        KeyRing.parse(f"{spec},{spec}")


def test_key_file_is_created_once_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "credential.keys"
    first = load_or_create_key_file(path)
    assert load_or_create_key_file(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    KeyRing.parse(first)


def test_processes_creating_the_key_file_together_all_get_the_one_written(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "credential.keys"
    start, specs, errors = threading.Barrier(16), [], []

    def create() -> None:
        start.wait()
        try:
            specs.append(load_or_create_key_file(path))
        except OSError as exc:  # the race this guards against raised FileExistsError here
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(specs) == {path.read_text(encoding="utf-8").strip()}
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["credential.keys"]  # no temporary file left


def test_account_row_round_trip_keeps_everything_and_hides_the_hash() -> None:
    ring = KeyRing.parse(generate_key_spec())
    row = account_to_row(ACCOUNT, ring)
    assert isinstance(row["credential"], bytes)
    assert not any(isinstance(v, str) and ("G4pkQxla" in v or "VaXa3H3O" in v) for v in row.values())
    assert row_to_account(row, ring) == dataclasses.replace(ACCOUNT, attributes={"roles": ["b", "a"],
                                                                                  "staff_code": ["S-1"]})


def test_fingerprint_ignores_json_formatting_but_not_content() -> None:
    reformatted = PasswordCredential(json.dumps(json.loads(SECRET), indent=2), json.dumps(json.loads(DATA)))
    same = dataclasses.replace(ACCOUNT, password=reformatted, attributes={"roles": ["a", "b"], "staff_code": ["S-1"]})
    assert same.fingerprint() == ACCOUNT.fingerprint()
    for changed in (dataclasses.replace(ACCOUNT, enabled=False), dataclasses.replace(ACCOUNT, required_actions=()),
                    dataclasses.replace(ACCOUNT, password=PasswordCredential(SECRET.replace("G4", "H4"), DATA)),
                    dataclasses.replace(ACCOUNT, deleted=True)):
        assert changed.fingerprint() != ACCOUNT.fingerprint()


def test_tampered_row_is_detected_by_its_fingerprint() -> None:
    ring = KeyRing.parse(generate_key_spec())
    row = account_to_row(ACCOUNT, ring)
    row["enabled"] = False
    with pytest.raises(ValueError, match="fingerprint"):
        row_to_account(row, ring)


def test_representation_carries_the_hash_not_a_password() -> None:
    rep = ACCOUNT.to_representation()
    assert rep["credentials"] == [{"type": "password", "secretData": SECRET, "credentialData": DATA}]
    assert "value" not in rep["credentials"][0]
