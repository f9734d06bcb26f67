"""The embedded stack's broker CA, certificate and SASL users, generated once into ``<data_dir>/secrets/broker/``.

Files (keys and passwords mode 0600, the directory 0700):

- ``ca.pem``: a self-signed CA (EC P-256, 10 years) that only signs the broker certificate; its
  key ``ca.key`` stays beside it so that a new broker certificate can be issued later.
- ``broker.pem`` / ``broker.key``: the broker endpoint's certificate (SAN ``127.0.0.1``,
  ``localhost`` and the configured ``host``; 825 days) and key, served by the link proxy
  (infra/local/link.py) when ``broker_security_protocol`` is ``ssl`` or ``sasl_ssl``.
- ``users.json``: ``{user: password}`` for every Kafka principal of streams/ops/access_policy.py,
  random 32-byte passwords (a configured ``broker_username`` is accepted besides them, with its
  configured password, and never written here).

Everything is created in a temporary directory and renamed into place in one step, so two
processes racing on a fresh data dir end up with one consistent set; a restart reuses it. A
user missing from an existing ``users.json`` (a principal added later) is added.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streams.runtime.credentials import kafka_principals
from streams.runtime.kafka_config import broker_secrets_dir, generated_users, users_file
from streams.runtime.settings import Settings

CA_DAYS = 3650
CERT_DAYS = 825


@dataclass(frozen=True)
class BrokerSecrets:
    """Paths of the generated files."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA certificate clients trust."""
        return self.directory / "ca.pem"

    @property
    def cert(self) -> Path:
        """The broker endpoint's certificate."""
        return self.directory / "broker.pem"

    @property
    def key(self) -> Path:
        """The broker endpoint's private key."""
        return self.directory / "broker.key"

    @property
    def users(self) -> Path:
        """The generated SASL users."""
        return self.directory / "users.json"


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(host: str) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        address = ipaddress.ip_address(host)
        if x509.IPAddress(address) not in names:
            names.append(x509.IPAddress(address))
    except ValueError:
        if host != "localhost":
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def generate_certificates(directory: Path, host: str = "127.0.0.1") -> None:
    """Write a fresh CA and a broker certificate signed by it into ``directory`` (files must not exist)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PLAT Sync embedded stack"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "PLAT Sync broker CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "platsync-broker")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(_san(host), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(directory / "ca.pem", ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(directory / "ca.key", _pem_key(ca_key), 0o600)
    _write(directory / "broker.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(directory / "broker.key", _pem_key(key), 0o600)


def wanted_users(settings: Settings) -> list[str]:
    """The generated SASL users: one per Kafka principal."""

    return list(kafka_principals(settings).values())


def endpoint_users(settings: Settings) -> dict[str, str]:
    """Every user the embedded broker endpoint accepts, with its password."""

    users = generated_users(settings)
    if settings.broker_username:
        users[settings.broker_username] = settings.broker_password
    return users


def ensure_broker_secrets(settings: Settings) -> BrokerSecrets:
    """The embedded stack's broker secrets, generated on first use and reused afterwards."""
    target = broker_secrets_dir(settings)
    if not (target / "broker.key").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".broker-", dir=target.parent))
        try:
            generate_certificates(staging, settings.host)
            _write(staging / "users.json", json.dumps({}).encode(), 0o600)
            try:
                staging.rename(target)  # atomic; fails if another process got there first
            except OSError:
                if not (target / "broker.key").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _ensure_users(settings)
    return BrokerSecrets(target)


def share_with_links(network: Settings, links: Iterable[Settings]) -> None:
    """A network's broker secrets, one set for all (``network``: its own settings; ``links``: its home links').

    The network has one broker endpoint, the link proxy run with its own settings. Each link's
    ``secrets/broker`` becomes a link to the network's, so the link's processes trust the network's CA, and each
    link's principals (named by its prefix: ``platsync.hosp-a-capture-local``, its subscriber...) get their users
    in the one users file the proxy reads. Generated here for every link, before the proxy starts."""
    if network.broker_security_protocol == "plaintext":
        return
    ensure_broker_secrets(network)
    target = broker_secrets_dir(network).resolve()
    for link in links:
        path = broker_secrets_dir(link)
        if not (path.is_symlink() and path.resolve() == target):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():  # a set of its own from an earlier start: never accepted by the proxy
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.symlink_to(target, target_is_directory=True)
        _ensure_users(link)


def _ensure_users(settings: Settings) -> None:
    path = users_file(settings)
    users = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    missing = [u for u in wanted_users(settings) if u not in users]
    if not missing:
        return
    for user in missing:
        users[user] = secrets.token_urlsafe(32)
    tmp = path.with_name(f".users.{os.getpid()}.json")
    tmp.unlink(missing_ok=True)
    _write(tmp, json.dumps(users, indent=1, sort_keys=True).encode(), 0o600)
    os.replace(tmp, path)


def server_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS server context of the embedded broker endpoint (TLS 1.2+, the generated certificate)."""
    paths = BrokerSecrets(broker_secrets_dir(settings))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(paths.cert, paths.key)
    return context
