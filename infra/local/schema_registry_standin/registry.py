"""The stand-in registry's state and rules, modelled on Confluent Schema Registry's documented behaviour.

- Schema ids are global: the same schema (compared after parsing, so whitespace does not matter)
  has the same id under every subject, and ids never change or get reused.
- Versions are per subject, 1, 2, ...; registering a schema the subject already holds returns its
  id without a new version and without a compatibility check.
- A new version must pass the subject's compatibility level (its own, else the global one):
  BACKWARD (the new schema reads data written with the latest), FORWARD (the latest reads data
  written with the new one), FULL (both), their ``_TRANSITIVE`` forms (against every version),
  NONE. The check is :func:`streams.core.contracts.backward_incompatibilities`, the project's contract
  check: data generated from the writer schema, read back through Avro schema resolution.
- Errors carry Confluent's codes: 40401 subject, 40402 version, 40403 schema not found, 40408 no
  subject-level compatibility, 409 incompatible schema, 42201 invalid schema, 42202 invalid
  version, 42203 invalid compatibility level.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import fastavro

from streams.core.contracts import backward_incompatibilities

LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")


class RegistryError(Exception):
    """An API error: HTTP ``status`` with Confluent's ``error_code`` and ``message``."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message

    def body(self) -> dict[str, Any]:
        """The JSON error body the registry sends."""
        return {"error_code": self.error_code, "message": self.message}


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def parse_schema_text(text: Any, schema_type: str = "AVRO") -> tuple[str, Any]:
    """(canonical text, parsed JSON) of a schema string; 42201 if it is not a valid Avro schema."""
    if schema_type.upper() != "AVRO":
        raise RegistryError(422, 42201, f"Invalid schema type {schema_type}: this stand-in supports AVRO only")
    if not isinstance(text, str) or not text.strip():
        raise RegistryError(422, 42201, "Empty schema")
    try:
        raw = json.loads(text)
        fastavro.parse_schema(raw)
    except Exception as exc:  # noqa: BLE001 - any parse failure is an invalid schema
        raise RegistryError(422, 42201, f"Invalid schema {text[:200]}: {type(exc).__name__}: {exc}") from None
    return json.dumps(raw, separators=(",", ":"), ensure_ascii=False), raw


def compatibility_problems(level: str, new: Any, existing: list[tuple[int, Any]]) -> list[str]:
    """Why ``new`` breaks ``level`` against ``existing`` ((version, parsed schema), oldest first)."""
    if level == "NONE" or not existing:
        return []
    targets = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    base = level.removesuffix("_TRANSITIVE")
    problems: list[str] = []
    for version, old in targets:
        if base in ("BACKWARD", "FULL"):
            problems += [f"{{errorType:'READER_CANNOT_READ_WRITER', description:'the new schema cannot read data "
                         f"written with version {version}: {p}'}}" for p in backward_incompatibilities(old, new)]
        if base in ("FORWARD", "FULL"):
            problems += [f"{{errorType:'WRITER_NOT_READABLE', description:'version {version} cannot read data "
                         f"written with the new schema: {p}'}}" for p in backward_incompatibilities(new, old)]
        if problems:
            return problems + [f"{{oldSchemaVersion: {version}}}", f"{{compatibility: '{level}'}}"]
    return []


class Registry:
    """Subjects, versions, global ids and compatibility levels; optionally persisted to a JSON file."""

    def __init__(self, state_file: Path | None = None, default_level: str = "BACKWARD") -> None:
        self.state_file = state_file
        self.schemas: dict[int, str] = {}  # id -> canonical text
        self.subjects: dict[str, list[int]] = {}  # subject -> ids of versions 1..n
        self.levels: dict[str, str] = {}  # subject -> level
        self.global_level = self._level(default_level)
        if state_file is not None and state_file.exists():
            state = json.loads(state_file.read_text(encoding="utf-8"))
            self.schemas = {int(k): v for k, v in state["schemas"].items()}
            self.subjects = {k: [int(i) for i in v] for k, v in state["subjects"].items()}
            self.levels = dict(state["levels"])
            self.global_level = state["global_level"]

    def _save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"schemas": self.schemas, "subjects": self.subjects, "levels": self.levels,
                                   "global_level": self.global_level}), encoding="utf-8")
        os.replace(tmp, self.state_file)

    @staticmethod
    def _level(level: Any) -> str:
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise RegistryError(422, 42203, "Invalid compatibility level. Valid values are none, backward, forward, "
                                "full, backward_transitive, forward_transitive, and full_transitive")
        return level.upper()

    def _versions(self, subject: str) -> list[int]:
        if subject not in self.subjects:
            raise subject_not_found(subject)
        return self.subjects[subject]

    def _version_index(self, subject: str, version: str) -> int:
        ids = self._versions(subject)
        if version == "latest" or version == "-1":
            return len(ids) - 1
        try:
            number = int(version)
        except ValueError:
            raise RegistryError(422, 42202, "The specified version '" + version + "' is not a valid version id. "
                                "Allowed values are between [1, 2^31-1] and the string \"latest\"") from None
        if not 1 <= number <= 2**31 - 1:
            raise RegistryError(422, 42202, f"The specified version '{version}' is not a valid version id. "
                                "Allowed values are between [1, 2^31-1] and the string \"latest\"")
        if number > len(ids):
            raise RegistryError(404, 40402, f"Version {number} not found.")
        return number - 1

    def level_of(self, subject: str) -> str:
        """The effective compatibility level of ``subject``."""
        return self.levels.get(subject, self.global_level)

    # -- API operations ----------------------------------------------------------------------------
    def register(self, subject: str, text: Any, schema_type: str = "AVRO") -> int:
        """``POST /subjects/{subject}/versions``."""
        canonical, raw = parse_schema_text(text, schema_type)
        ids = self.subjects.get(subject, [])
        for schema_id in ids:
            if self.schemas[schema_id] == canonical:
                return schema_id
        existing = [(n + 1, json.loads(self.schemas[i])) for n, i in enumerate(ids)]
        level = self.level_of(subject)
        problems = compatibility_problems(level, raw, existing)
        if problems:
            raise RegistryError(409, 409, "Schema being registered is incompatible with an earlier schema for "
                                f"subject \"{subject}\", details: [{', '.join(problems)}]")
        schema_id = next((i for i, t in self.schemas.items() if t == canonical), None)
        if schema_id is None:
            schema_id = max(self.schemas, default=0) + 1
            self.schemas[schema_id] = canonical
        self.subjects.setdefault(subject, []).append(schema_id)
        self._save()
        return schema_id

    def lookup(self, subject: str, text: Any, schema_type: str = "AVRO") -> dict[str, Any]:
        """``POST /subjects/{subject}``: the version of ``text`` under ``subject``."""
        canonical, _raw = parse_schema_text(text, schema_type)
        ids = self._versions(subject)
        for n, schema_id in enumerate(ids):
            if self.schemas[schema_id] == canonical:
                return {"subject": subject, "version": n + 1, "id": schema_id, "schema": canonical}
        raise RegistryError(404, 40403, "Schema not found")

    def schema(self, schema_id: str) -> dict[str, Any]:
        """``GET /schemas/ids/{id}``."""
        try:
            return {"schema": self.schemas[int(schema_id)]}
        except (KeyError, ValueError):
            raise RegistryError(404, 40403, f"Schema {schema_id} not found") from None

    def versions(self, subject: str) -> list[int]:
        """``GET /subjects/{subject}/versions``."""
        return list(range(1, len(self._versions(subject)) + 1))

    def version(self, subject: str, version: str) -> dict[str, Any]:
        """``GET /subjects/{subject}/versions/{version}``."""
        index = self._version_index(subject, version)
        schema_id = self.subjects[subject][index]
        return {"subject": subject, "version": index + 1, "id": schema_id, "schema": self.schemas[schema_id]}

    def check(self, subject: str, version: str, text: Any, schema_type: str = "AVRO") -> list[str]:
        """``POST /compatibility/subjects/{subject}/versions/{version}``: the problems (empty: compatible)."""
        _canonical, raw = parse_schema_text(text, schema_type)
        index = self._version_index(subject, version)
        level = self.level_of(subject)
        ids = self.subjects[subject]
        if version in ("latest", "-1"):
            existing = [(n + 1, json.loads(self.schemas[i])) for n, i in enumerate(ids)]
        else:  # against that one version, transitive or not
            existing = [(index + 1, json.loads(self.schemas[ids[index]]))]
        return compatibility_problems(level, raw, existing)

    def set_level(self, level: Any, subject: str | None = None) -> str:
        """``PUT /config[/{subject}]``."""
        checked = self._level(level)
        if subject is None:
            self.global_level = checked
        else:
            self.levels[subject] = checked
        self._save()
        return checked

    def get_level(self, subject: str | None = None, default_to_global: bool = False) -> str:
        """``GET /config[/{subject}]``."""
        if subject is None:
            return self.global_level
        if subject in self.levels:
            return self.levels[subject]
        if default_to_global:
            return self.global_level
        raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
