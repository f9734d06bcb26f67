"""A small client of the Confluent Schema Registry REST API (``application/vnd.schemaregistry.v1+json``).

Only what the engine needs: register a schema under a subject, look one up, fetch a schema by its
global id, test compatibility, set and read compatibility levels, list subjects and versions.
Errors are typed by who can fix them:

- :class:`SchemaRegistryUnavailableError`: the registry cannot be reached or answers 5xx. It is a
  :class:`~streams.core.errors.RetryableError`, so a worker waits and retries instead of
  dead-lettering good messages;
- :class:`SchemaRegistryAuthError` (401/403): fix ``schema_registry_user``/``schema_registry_password``;
- :class:`IncompatibleSchemaError` (409): the registry's compatibility rule refuses the schema;
- :class:`InvalidSchemaError` (422, error code 42201) and :class:`SchemaNotFoundError` (404: 40401
  subject, 40402 version, 40403 schema id).

Every error carries the registry's ``{"error_code", "message"}``. Subjects follow Confluent's
RecordNameStrategy (:func:`subject_for`): see docs/schema_registry.md for why.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from streams.core.errors import PlatSyncError, RetryableError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPT = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; q=0.9, application/json; q=0.5"
COMPATIBILITY_LEVELS = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
                        "FULL_TRANSITIVE", "NONE")


class SchemaRegistryError(PlatSyncError, RuntimeError):
    """The registry answered with an error (``status``, its ``error_code`` and ``message``)."""

    def __init__(self, text: str, status: int = 0, error_code: int = 0, message: str = "") -> None:
        super().__init__(text)
        self.status, self.error_code, self.message = status, error_code, message


class SchemaRegistryUnavailableError(SchemaRegistryError, RetryableError):
    """The registry cannot be reached, timed out or failed (5xx): retry later."""


class SchemaRegistryAuthError(SchemaRegistryError):
    """401/403: the configured credentials are missing, wrong or lack a permission."""


class IncompatibleSchemaError(SchemaRegistryError):
    """409: the schema breaks the subject's compatibility level."""


class InvalidSchemaError(SchemaRegistryError):
    """422: the registry refuses the schema itself (42201), a version (42202) or a level (42203)."""


class SchemaNotFoundError(SchemaRegistryError):
    """404: unknown subject (40401), version (40402) or schema id (40403)."""


def subject_for(raw_schema: dict[str, Any]) -> str:
    """The RecordNameStrategy subject of an Avro record schema: its full name (``jp.plat.sync.ChangeEvent``)."""
    name = str(raw_schema.get("name", ""))
    namespace = raw_schema.get("namespace")
    if not name:
        raise ValueError("an Avro record schema without a name has no RecordNameStrategy subject")
    return name if "." in name or not namespace else f"{namespace}.{name}"


class SchemaRegistryClient:
    """Talks to one registry at ``url`` (optionally with HTTP basic auth)."""

    def __init__(self, url: str, user: str = "", password: str = "", timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"schema_registry_url {url!r}: expected an http:// or https:// URL")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Accept": ACCEPT, "Content-Type": CONTENT_TYPE, "User-Agent": "platsync"}
        if user or password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"

    # -- HTTP ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers)
        what = f"schema registry {self.url}: {method} {path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - configured URL
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(what, exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SchemaRegistryUnavailableError(f"{what}: unreachable ({reason}); start the registry or fix "
                                                 "schema_registry_url") from None
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise SchemaRegistryUnavailableError(f"{what}: answered something that is not JSON: "
                                                 f"{payload[:120]!r}") from None

    def _error(self, what: str, status: int, raw: bytes) -> Exception:
        try:
            doc = json.loads(raw)
            code, message = int(doc.get("error_code", status)), str(doc.get("message", ""))
        except (ValueError, TypeError, AttributeError):
            code, message = status, raw.decode("utf-8", "replace")[:200]
        text = f"{what}: HTTP {status} (error code {code}): {message}"
        if status >= 500 or status == 429:
            return SchemaRegistryUnavailableError(text)
        if status in (401, 403):
            return SchemaRegistryAuthError(f"{text}; check schema_registry_user and schema_registry_password",
                                           status, code, message)
        kind = {409: IncompatibleSchemaError, 422: InvalidSchemaError, 404: SchemaNotFoundError}.get(
            status, SchemaRegistryError)
        return kind(text, status, code, message)

    # -- API ----------------------------------------------------------------------------------
    @staticmethod
    def _subject(subject: str) -> str:
        return urllib.parse.quote(subject, safe="")

    def subjects(self) -> list[str]:
        """``GET /subjects``: every registered subject."""
        return list(self._request("GET", "/subjects"))

    def versions(self, subject: str) -> list[int]:
        """``GET /subjects/{subject}/versions``."""
        return [int(v) for v in self._request("GET", f"/subjects/{self._subject(subject)}/versions")]

    def version(self, subject: str, version: int | str = "latest") -> dict[str, Any]:
        """``GET /subjects/{subject}/versions/{version}``: ``{"subject", "version", "id", "schema"}``."""
        return dict(self._request("GET", f"/subjects/{self._subject(subject)}/versions/{version}"))

    def register(self, subject: str, schema: str) -> int:
        """``POST /subjects/{subject}/versions``: the global id of ``schema`` (the same id if already registered)."""
        answer = self._request("POST", f"/subjects/{self._subject(subject)}/versions", {"schema": schema})
        return int(answer["id"])

    def lookup(self, subject: str, schema: str) -> int:
        """``POST /subjects/{subject}``: the id of ``schema`` if registered under ``subject`` (else 404)."""
        return int(self._request("POST", f"/subjects/{self._subject(subject)}", {"schema": schema})["id"])

    def schema(self, schema_id: int) -> str:
        """``GET /schemas/ids/{id}``: the schema text with that global id (404, 40403 if unknown)."""
        return str(self._request("GET", f"/schemas/ids/{int(schema_id)}")["schema"])

    def compatibility_problems(self, subject: str, schema: str, version: int | str = "latest") -> list[str] | None:
        """``POST /compatibility/subjects/{subject}/versions/{version}?verbose=true``.

        None if ``schema`` is compatible under the subject's level, else the registry's reasons
        (possibly empty). A subject that does not exist yet is compatible (nothing to break).
        """
        try:
            answer = self._request("POST", f"/compatibility/subjects/{self._subject(subject)}/versions/{version}",
                                   {"schema": schema}, {"verbose": "true"})
        except SchemaNotFoundError as exc:
            if exc.error_code == 40401 and version == "latest":
                return None
            raise
        if answer.get("is_compatible"):
            return None
        return [str(m) for m in answer.get("messages") or []]

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        """``PUT /config[/{subject}]``: set the compatibility level; returns the level set."""
        level = level.upper()
        if level not in COMPATIBILITY_LEVELS:
            raise ValueError(f"schema_registry_compatibility {level!r}: expected one of "
                             f"{', '.join(COMPATIBILITY_LEVELS)}")
        path = "/config" if subject is None else f"/config/{self._subject(subject)}"
        return str(self._request("PUT", path, {"compatibility": level})["compatibility"])

    def compatibility(self, subject: str | None = None) -> str:
        """``GET /config[/{subject}]``: the level (a subject without its own level: the global one)."""
        if subject is None:
            return str(self._request("GET", "/config")["compatibilityLevel"])
        answer = self._request("GET", f"/config/{self._subject(subject)}", query={"defaultToGlobal": "true"})
        return str(answer["compatibilityLevel"])
