"""Keycloak's PBKDF2 password credentials: hashing and verification, byte-compatible with Keycloak.

Keycloak stores a password credential as two JSON strings (``credential`` table, columns
``secret_data`` and ``credential_data``)::

    secret_data     {"value": "<b64 derived key>", "salt": "<b64 salt>", "additionalParameters": {}}
    credential_data {"hashIterations": 210000, "algorithm": "pbkdf2-sha512", "additionalParameters": {}}

The PBKDF2 providers (``Pbkdf2PasswordHashProvider`` and its sha256/sha512 factories) derive the
key with ``PBKDF2WithHmacSHA{1,256,512}`` over the UTF-8 password and a 16-byte random salt;
verification derives a key as long as the stored one (``keySize = decoded value length * 8``).
Keycloak 24 made pbkdf2-sha512 with 210,000 iterations the default (Keycloak 25+ defaults to
argon2 outside FIPS mode, which this stand-in cannot verify: such a credential never matches,
as in a Keycloak without the algorithm's provider). The stand-in's realms behave as if their
password policy were Keycloak 24's default (``hashAlgorithm(pbkdf2-sha512)``, 210,000 iterations).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

DEFAULT_ALGORITHM = "pbkdf2-sha512"
DEFAULT_ITERATIONS = 210_000
SALT_BYTES = 16

#: Keycloak algorithm id -> (hashlib digest name, derived key bytes when hashing).
PBKDF2_ALGORITHMS: dict[str, tuple[str, int]] = {
    "pbkdf2-sha512": ("sha512", 64),
    "pbkdf2-sha256": ("sha256", 32),
    "pbkdf2": ("sha1", 64),
}


@dataclass(frozen=True)
class StoredPassword:
    """A password credential's two JSON documents, as stored in Keycloak's ``credential`` table."""

    secret_data: str
    credential_data: str


def hash_password(password: str, algorithm: str = DEFAULT_ALGORITHM,
                  iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> StoredPassword:
    """Hash ``password`` the way Keycloak's PBKDF2 provider does (random salt unless given)."""
    if algorithm not in PBKDF2_ALGORITHMS:
        raise ValueError(f"unsupported password hash algorithm {algorithm!r}")
    digest, key_bytes = PBKDF2_ALGORITHMS[algorithm]
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    derived = hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations, key_bytes)
    secret = {"value": _b64(derived), "salt": _b64(salt), "additionalParameters": {}}
    data = {"hashIterations": iterations, "algorithm": algorithm, "additionalParameters": {}}
    return StoredPassword(json.dumps(secret, separators=(",", ":")), json.dumps(data, separators=(",", ":")))


def verify_password(password: str, secret_data: str, credential_data: str) -> bool:
    """True if ``password`` matches the stored credential (False for unknown algorithms or bad JSON)."""
    try:
        secret = json.loads(secret_data)
        data = json.loads(credential_data)
        algorithm = data.get("algorithm") or DEFAULT_ALGORITHM
        iterations = int(data["hashIterations"])
        expected = base64.b64decode(secret["value"])
        salt = base64.b64decode(secret["salt"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    if algorithm not in PBKDF2_ALGORITHMS or iterations <= 0 or not expected:
        return False
    digest, _ = PBKDF2_ALGORITHMS[algorithm]
    derived = hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations, len(expected))
    return hmac.compare_digest(derived, expected)


def meets_policy(credential_data: str, algorithm: str = DEFAULT_ALGORITHM,
                 iterations: int = DEFAULT_ITERATIONS) -> bool:
    """Keycloak's ``policyCheck``: does the stored hash use the realm's algorithm and iterations?

    After a successful login Keycloak re-hashes a password that fails this check and updates the
    credential row in place (``PasswordCredentialProvider.isValid``).
    """
    try:
        data = json.loads(credential_data)
        return data.get("algorithm") == algorithm and int(data.get("hashIterations")) == iterations
    except (ValueError, TypeError, AttributeError):
        return False


def valid_password_documents(secret_data: object, credential_data: object) -> bool:
    """True if the two strings parse as a Keycloak password credential (any algorithm)."""
    if not isinstance(secret_data, str) or not isinstance(credential_data, str):
        return False
    try:
        secret, data = json.loads(secret_data), json.loads(credential_data)
    except ValueError:
        return False
    return (isinstance(secret, dict) and isinstance(data, dict) and isinstance(secret.get("value"), str)
            and isinstance(data.get("hashIterations"), int))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
