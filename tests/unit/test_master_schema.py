"""The master's database objects as text: each statement executed alone, protected columns checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.stores import master_schema
from connectors.stores.master_schema import ProtectedColumnError, create_master_objects
from connectors.stores.tables import ROW_FILTERS, meta_metadata, sent_rows, sent_tables
from streams.runtime.node_settings import SettingsError
from streams.runtime.settings import load_settings

SYNCED = [c.name for c in meta_metadata().tables["master_medical_orgs"].columns]


class Recorder:
    """Stands in for a SQLAlchemy connection: records each statement's text (no database involved)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, statement: Any) -> None:
        self.statements.append(str(statement))


def test_the_hospital_gets_the_functions_and_triggers_one_statement_at_a_time() -> None:
    conn = Recorder()
    create_master_objects(conn, "local", ("display_alias",), SYNCED)  # type: ignore[arg-type]
    bodies = [s for s in conn.statements if "FUNCTION" in s and "$$" in s]
    assert all(s.count("$$") == 2 for s in bodies)  # never two functions in one execute
    triggers = [s for s in conn.statements if s.startswith("CREATE OR REPLACE TRIGGER")]
    assert len(triggers) == 6 and all(s.count(";") == 1 for s in triggers)
    assert not any("display_alias" in s for s in conn.statements)  # protected columns: the cloud's only
    assert any("CREATE SEQUENCE IF NOT EXISTS master_org_version_seq" in s for s in conn.statements)


def test_the_cloud_gets_its_protected_columns_and_the_guard_but_no_hospital_trigger() -> None:
    conn = Recorder()
    create_master_objects(conn, "remote", ("display_alias", "cloud_note"), SYNCED)  # type: ignore[arg-type]
    text = "\n".join(conn.statements)
    assert "ADD COLUMN IF NOT EXISTS display_alias text" in text and "ADD COLUMN IF NOT EXISTS cloud_note text" in text
    assert "platsync_master_guard" in text and "platsync_row BEFORE" not in text
    guard = next(s for s in conn.statements if "FUNCTION platsync_master_guard" in s)
    assert all(f"NEW.{c}" in guard for c in SYNCED) and "NEW.display_alias" not in guard


def test_a_protected_column_named_like_a_synced_one_is_refused() -> None:
    with pytest.raises(ProtectedColumnError, match="name, which the sync writes"):
        create_master_objects(Recorder(), "remote", ("display_alias", "name"), SYNCED)  # type: ignore[arg-type]


def test_an_unterminated_script_is_an_error() -> None:
    with pytest.raises(ValueError, match="unterminated statement"):
        master_schema._run(Recorder(), "CREATE SEQUENCE x")  # type: ignore[arg-type]


def test_only_the_hospital_sends_the_master_and_only_its_target_rows() -> None:
    assert "master_medical_orgs" in sent_tables("meta", "local")
    assert "master_medical_orgs" not in sent_tables("meta", "remote")
    assert sent_tables("meta", "remote") == ("plat_users", "patients", "staff", "documents")
    assert sent_rows("master_medical_orgs") == ROW_FILTERS["master_medical_orgs"] == "is_target"
    assert sent_rows("documents") == "true"


def test_protected_column_names_are_checked_in_the_settings(tmp_path: Path) -> None:
    assert load_settings(env={}, data_dir=tmp_path).master_protected_column_names == ("display_alias", "cloud_note")
    env = {"PLATSYNC_MASTER_PROTECTED_COLUMNS": "alias, note;drop"}
    with pytest.raises(SettingsError, match="'note;drop' is not a column name"):
        load_settings(env=env, data_dir=tmp_path)
