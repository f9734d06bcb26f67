"""Encryption of credential hashes carried through Kafka (AES-256-GCM with a key ring).

A password hash (Keycloak's ``secret_data``/``credential_data``) is sensitive even though it
is not the password, so it never travels in clear: the capture encrypts it with the current
key of the ring, the sink decrypts it with whichever key the ciphertext names. The ring is
configured on both sides (setting ``credential_keys`` = ``kid:base64key,...``; the first key
encrypts, all keys decrypt) and never written to a topic.

Key rotation: add the new key *first* on both sides while keeping the old one after it;
once every message encrypted with the old key has been applied (``platsync wait-synced``)
and no replay older than that point is needed, remove the old key.

Ciphertext layout: ``b"PSK1" | len(kid) (1 byte) | kid | 12-byte nonce | AES-GCM(ciphertext+tag)``,
with the key id and a purpose string as associated data, so a ciphertext cannot be moved to
another purpose or key id undetected.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.core.errors import PlatSyncError
from streams.runtime.settings import Settings

MAGIC = b"PSK1"


class CredentialKeyError(PlatSyncError, ValueError):
    """The key ring is malformed, or a ciphertext cannot be decrypted with it."""


@dataclass(frozen=True)
class KeyRing:
    """Named AES-256 keys; the first one encrypts."""

    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """Parse ``kid:base64key[,kid:base64key...]`` (32-byte keys), with a precise error."""
        keys: list[tuple[str, bytes]] = []
        for i, item in enumerate(p.strip() for p in spec.split(",") if p.strip()):
            kid, sep, b64 = item.partition(":")
            if not sep or not kid or len(kid.encode()) > 255:
                raise CredentialKeyError(f"credential_keys[{i}]: expected 'kid:base64key', got {item[:12]!r}...")
            try:
                key = base64.b64decode(b64, validate=True)
            except ValueError:
                raise CredentialKeyError(f"credential_keys[{i}] ({kid}): key is not valid base64") from None
            if len(key) != 32:
                raise CredentialKeyError(f"credential_keys[{i}] ({kid}): expected a 32-byte key, got {len(key)}")
            if kid in dict(keys):
                raise CredentialKeyError(f"credential_keys[{i}]: duplicate key id {kid!r}")
            keys.append((kid, key))
        if not keys:
            raise CredentialKeyError("credential_keys is empty: configure at least one 'kid:base64key'")
        return cls(tuple(keys))

    def encrypt(self, plaintext: bytes, purpose: str) -> bytes:
        """Encrypt with the current (first) key."""
        kid, key = self.keys[0]
        nonce = os.urandom(12)
        kid_b = kid.encode()
        sealed = AESGCM(key).encrypt(nonce, plaintext, kid_b + b"|" + purpose.encode())
        return MAGIC + bytes([len(kid_b)]) + kid_b + nonce + sealed

    def decrypt(self, blob: bytes, purpose: str) -> bytes:
        """Decrypt with the key the ciphertext names; raise :class:`CredentialKeyError` otherwise."""
        if len(blob) < 6 or not blob.startswith(MAGIC):
            raise CredentialKeyError("not a PLAT Sync credential ciphertext")
        n = blob[4]
        kid = blob[5:5 + n].decode(errors="replace")
        nonce, sealed = blob[5 + n:17 + n], blob[17 + n:]
        key = dict(self.keys).get(kid)
        if key is None:
            raise CredentialKeyError(f"credential encrypted with key {kid!r}, which this side's key ring lacks: "
                                     "add it to credential_keys (see key rotation in docs/keycloak.md)")
        try:
            return AESGCM(key).decrypt(nonce, sealed, kid.encode() + b"|" + purpose.encode())
        except InvalidTag:
            raise CredentialKeyError(f"credential ciphertext failed authentication with key {kid!r}") from None


def generate_key_spec(kid: str | None = None) -> str:
    """A fresh ``kid:base64key`` entry."""
    kid = kid or f"k{secrets.token_hex(4)}"
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


def load_or_create_key_file(path: Path) -> str:
    """The key ring stored at ``path`` (mode 0600), created with one fresh key if absent."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = generate_key_spec()
    # Written whole under a private name, then linked into place: processes starting together (both
    # captures of a fresh stack) never see half a file, and the first link wins for all of them.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(spec + "\n")
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    finally:
        tmp.unlink(missing_ok=True)
    return spec


def key_ring_for(settings: Settings) -> KeyRing:
    """The configured key ring, or the embedded stack's generated one in ``<data_dir>/secrets``."""
    spec = settings.credential_keys or load_or_create_key_file(settings.data_dir / "secrets" / "credential.keys")
    return KeyRing.parse(spec)
