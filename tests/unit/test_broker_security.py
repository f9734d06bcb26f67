"""Broker connection security without processes: client settings per protocol, settings errors,
the generated CA and broker certificate, the SCRAM/PLAIN server of the broker endpoint."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import stat
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from infra.local.broker_secrets import ensure_broker_secrets, server_ssl_context
from infra.local.kafka_sasl import (
    AuthFailed,
    Request,
    SaslSession,
    UserStore,
    authenticate_response,
    authenticate_token,
    handshake_response,
    parse_request,
    scram_credential,
)
from streams.runtime.credentials import kafka_principals
from streams.runtime.kafka_config import BrokerSecurityError, client_config, faust_broker_options
from streams.runtime.settings import SettingsError, load_settings


def settings_for(tmp_path: Path, **overrides: object):
    return load_settings(env={}, data_dir=tmp_path, **overrides)


def test_plaintext_client_config_is_bootstrap_back_off_and_client_id_only(tmp_path: Path) -> None:
    s = settings_for(tmp_path, broker_reconnect_backoff_ms=700, broker_reconnect_backoff_max_ms=3000)
    common = {"bootstrap.servers": s.broker_bootstrap, "reconnect.backoff.ms": 700,
              "reconnect.backoff.max.ms": 3000, "log_level": 4}
    assert client_config(s) == common
    assert client_config(s, "platsync-local-x") == {**common, "client.id": "platsync-local-x"}
    assert faust_broker_options(s) == {"broker": f"kafka://{s.broker_bootstrap}"}


def test_ssl_client_config_trusts_the_generated_ca(tmp_path: Path) -> None:
    s = settings_for(tmp_path, broker_security_protocol="ssl")
    with pytest.raises(BrokerSecurityError, match="platsync up"):
        client_config(s)  # nothing generated yet: an actionable error, not a librdkafka one
    secrets = ensure_broker_secrets(s)
    config = client_config(s, "platsync-remote-x")
    assert config == {"bootstrap.servers": s.broker_bootstrap, "client.id": "platsync-remote-x",
                      "reconnect.backoff.ms": 1000, "reconnect.backoff.max.ms": 2000, "log_level": 4,
                      "security.protocol": "SSL", "ssl.ca.location": str(secrets.ca),
                      "ssl.endpoint.identification.algorithm": "https"}
    creds = faust_broker_options(s)["broker_credentials"]
    assert creds.protocol.value == "SSL"


def test_sasl_ssl_client_config_uses_each_principals_generated_password(tmp_path: Path) -> None:
    s = settings_for(tmp_path, broker_security_protocol="sasl_ssl", broker_sasl_mechanism="SCRAM-SHA-512")
    ensure_broker_secrets(s)
    users = json.loads((tmp_path / "secrets" / "broker" / "users.json").read_text())
    assert set(users) == set(kafka_principals(s).values())
    capture = client_config(s, "platsync-local-capture-meta", "capture-local")
    assert capture["security.protocol"] == "SASL_SSL" and capture["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert capture["sasl.username"] == "platsync-capture-local"
    assert capture["sasl.password"] == users["platsync-capture-local"]
    operator = client_config(s)
    assert operator["sasl.username"] == "platsync-operator" and operator["sasl.password"] != capture["sasl.password"]
    creds = faust_broker_options(s, "worker-local_to_remote")["broker_credentials"]
    assert (creds.username, creds.mechanism.value, creds.protocol.value) == (
        "platsync-worker-local_to_remote", "SCRAM-SHA-512", "SASL_SSL")
    with pytest.raises(BrokerSecurityError, match="unknown Kafka principal"):
        client_config(s, principal="nobody")


def test_configured_user_and_ca_are_used_as_given(tmp_path: Path) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = settings_for(tmp_path, broker_security_protocol="sasl_ssl", broker_sasl_mechanism="PLAIN",
                     broker_username="svc-sync", broker_password="p@ss", broker_ca_file=str(ca),
                     broker_bootstrap_servers="kafka-0:9093,kafka-1:9093")
    config = client_config(s, principal="capture-local")  # a configured user wins over the principals
    assert config["bootstrap.servers"] == "kafka-0:9093,kafka-1:9093"
    assert (config["sasl.username"], config["sasl.password"], config["ssl.ca.location"]) == (
        "svc-sync", "p@ss", str(ca))
    missing = settings_for(tmp_path, broker_security_protocol="ssl", broker_ca_file=str(tmp_path / "no.pem"))
    with pytest.raises(BrokerSecurityError, match="broker_ca_file"):
        client_config(missing)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"broker_security_protocol": "SASL_PLAINTEXT"}, "broker_security_protocol must be one of plaintext, ssl, "
                                                     "sasl_ssl"),
    ({"broker_security_protocol": "tls"}, "got 'tls'"),
    ({"broker_sasl_mechanism": "GSSAPI"}, "broker_sasl_mechanism must be one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN"),
    ({"broker_username": "u"}, "broker_username and broker_password go together"),
    ({"broker_password": "p"}, "broker_username and broker_password go together"),
])
def test_bad_security_settings_are_refused_with_the_fix(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_for(tmp_path, **overrides)


def test_environment_selects_the_protocol(tmp_path: Path) -> None:
    s = load_settings(env={"PLATSYNC_BROKER_SECURITY_PROTOCOL": "sasl_ssl"}, data_dir=tmp_path)
    assert s.broker_security_protocol == "sasl_ssl"
    with pytest.raises(SettingsError, match="broker_security_protocol"):
        load_settings(env={"PLATSYNC_BROKER_SECURITY_PROTOCOL": "ssl3"}, data_dir=tmp_path)


def test_generated_certificate_san_validity_modes_and_reuse(tmp_path: Path) -> None:
    s = settings_for(tmp_path, broker_security_protocol="ssl")
    secrets = ensure_broker_secrets(s)
    ca = x509.load_pem_x509_certificate(secrets.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(secrets.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=800)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca)
    for path in (secrets.key, secrets.directory / "ca.key", secrets.users):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(secrets.directory.stat().st_mode) == 0o700
    # A client trusting the CA accepts the certificate for 127.0.0.1 (host name checked).
    client = ssl.create_default_context(cafile=str(secrets.ca))
    server = server_ssl_context(s)
    assert client.check_hostname and server.minimum_version == ssl.TLSVersion.TLSv1_2
    before = {p.name: p.read_bytes() for p in secrets.directory.iterdir()}
    assert ensure_broker_secrets(s).directory == secrets.directory
    assert {p.name: p.read_bytes() for p in secrets.directory.iterdir()} == before  # reused, not regenerated


def test_a_principal_added_later_gets_a_password_and_existing_ones_stay(tmp_path: Path) -> None:
    s = settings_for(tmp_path, broker_security_protocol="sasl_ssl")
    users_path = ensure_broker_secrets(s).users
    users = json.loads(users_path.read_text())
    users.pop("platsync-operator")
    users_path.write_text(json.dumps(users))
    ensure_broker_secrets(s)
    again = json.loads(users_path.read_text())
    assert again["platsync-operator"] and {k: again[k] for k in users} == users
    assert stat.S_IMODE(users_path.stat().st_mode) == 0o600


# --- the SCRAM/PLAIN server of the broker endpoint (infra/local/kafka_sasl.py) -------------------

def rfc7677_store() -> UserStore:
    """RFC 7677 section 3's example user: user / pencil, salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 rounds."""
    cred = scram_credential("pencil", "SCRAM-SHA-256", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    return UserStore({"user": "pencil"}, {("user", "SCRAM-SHA-256"): cred})


def test_scram_sha_256_matches_the_rfc_7677_example() -> None:
    session = SaslSession(rfc7677_store(), "SCRAM-SHA-256", nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    server_first = session.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert server_first == b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    server_final = session.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert server_final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert session.done and session.user == "user"


@pytest.mark.parametrize("final", [
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAAZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    b"c=biws,r=rOprNGfwEbeRWgbNEkqOother,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    b"garbage",
])
def test_scram_wrong_proof_nonce_or_binding_is_refused(final: bytes) -> None:
    session = SaslSession(rfc7677_store(), "SCRAM-SHA-256", nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    session.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    with pytest.raises(AuthFailed):
        session.step(final)
    assert not session.done


def test_scram_unknown_user_and_plain_passwords() -> None:
    store = UserStore({"alice": "s3cret"})
    with pytest.raises(AuthFailed, match="'bob'"):
        SaslSession(store, "SCRAM-SHA-512").step(b"n,,n=bob,r=abc")
    assert SaslSession(store, "SCRAM-SHA-512").step(b"n,,n=alice,r=abc").startswith(b"r=abc")
    plain = SaslSession(store, "PLAIN")
    assert plain.step(b"\0alice\0s3cret") == b"" and plain.done and plain.user == "alice"
    for token in (b"\0alice\0wrong", b"\0mallory\0s3cret", b"bob\0alice\0s3cret", b"alice"):
        with pytest.raises(AuthFailed):
            SaslSession(store, "PLAIN").step(token)


def test_sasl_frames_round_trip_in_every_version() -> None:
    header = struct.pack(">hhih", 36, 1, 9, 3) + b"cli"
    req = parse_request(header + struct.pack(">i", 4) + b"tokn", flexible=False)
    assert (req.api_key, req.version, req.correlation_id, authenticate_token(req)) == (36, 1, 9, b"tokn")
    flexible = struct.pack(">hhih", 36, 2, 9, 3) + b"cli" + b"\x00" + bytes([5]) + b"tokn" + b"\x00"
    req2 = parse_request(flexible, flexible=True)
    assert authenticate_token(req2) == b"tokn"
    v1 = authenticate_response(Request(36, 1, 9, b""), 58, "no", b"")
    assert v1 == struct.pack(">iihh", 4 + 2 + 2 + 2 + 4 + 8, 9, 58, 2) + b"no" + struct.pack(">iq", 0, 0)
    v2 = authenticate_response(Request(36, 2, 9, b""), 0, None, b"v=x")
    assert v2 == struct.pack(">ii", 4 + 1 + 2 + 1 + 4 + 8 + 1, 9) + b"\x00" + struct.pack(">h", 0) + b"\x00" \
        + bytes([4]) + b"v=x" + struct.pack(">q", 0) + b"\x00"
    hs = handshake_response(9, 0, ("SCRAM-SHA-256",))
    assert hs == struct.pack(">iihih", 4 + 2 + 4 + 2 + 13, 9, 0, 1, 13) + b"SCRAM-SHA-256"
