"""The settings object: defaults < file < environment < options, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.runtime.connections import dsn, libpq_dsn
from streams.runtime.credentials import AccessPolicyError
from streams.runtime.settings import Settings, SettingsError, load_settings
from streams.runtime.settings_file import settings_to_toml


def test_defaults_need_nothing(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path)
    assert s.broker_port == Settings.broker_port and s.data_dir == tmp_path.absolute()
    assert s.topic("local", "meta") == "platsync.local.meta"
    assert s.consumer_group("local_to_remote") == "platsync-local_to_remote"


def test_file_then_env_then_option_precedence(tmp_path: Path) -> None:
    (tmp_path / "platsync.toml").write_text("broker_port = 20000\npg_local_port = 20001\nworker_batch_size = 7\n")
    s = load_settings(env={"PLATSYNC_DATA_DIR": str(tmp_path), "PLATSYNC_PG_LOCAL_PORT": "20002"},
                      worker_batch_size=9)
    assert (s.broker_port, s.pg_port("local"), s.worker_batch_size) == (20000, 20002, 9)


def test_explicit_config_file_via_env(tmp_path: Path) -> None:
    cfg = tmp_path / "other.toml"
    cfg.write_text('topic_prefix = "hospital1"\n')
    s = load_settings(env={"PLATSYNC_CONFIG": str(cfg)}, data_dir=tmp_path)
    assert s.topic("remote", "fructos_patient") == "hospital1.remote.fructos_patient"


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "platsync.toml").write_text("brokr_port = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'brokr_port'"):
        load_settings(env={}, data_dir=tmp_path)


def test_wrong_type_in_env_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="environment PLATSYNC_BROKER_PORT: broker_port expects int"):
        load_settings(env={"PLATSYNC_BROKER_PORT": "abc"}, data_dir=tmp_path)


def test_broken_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "platsync.toml").write_text("broker_port = \n")
    with pytest.raises(SettingsError, match="platsync.toml"):
        load_settings(env={}, data_dir=tmp_path)


def test_dsn_and_ports_per_side(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path, pg_local_port=1111, pg_remote_port=2222)
    assert "port=1111 dbname=meta" in libpq_dsn(s, "local", "meta")
    assert dsn(s, "remote", "fructos_patient").endswith(":2222/fructos_patient")


def test_nodes_table_and_flat_alias_address_the_same_setting(tmp_path: Path) -> None:
    (tmp_path / "platsync.toml").write_text('[nodes.local]\npg_port = 21001\npg_host = "db.hospital"\n'
                                            "[nodes.remote]\nmode_port = 21002\n")
    s = load_settings(env={"PLATSYNC_KEYCLOAK_REMOTE_URL": "https://kc.cloud"}, data_dir=tmp_path)
    assert (s.pg_port("local"), s.pg_host("local"), s.mode_port("remote")) == (21001, "db.hospital", 21002)
    assert s.keycloak_url("remote") == "https://kc.cloud"
    assert s.keycloak_url("local") == f"http://{s.host}:18080"  # untouched defaults stay
    assert load_settings(env={}, data_dir=tmp_path, pg_local_port=21003).pg_port("local") == 21003


def test_a_further_node_needs_its_ports(tmp_path: Path) -> None:
    (tmp_path / "platsync.toml").write_text("[nodes.hosp-b]\npg_port = 22000\n")
    with pytest.raises(SettingsError, match=r"nodes.hosp-b: missing keycloak_port, mode_port, metrics_capture_port"):
        load_settings(env={}, data_dir=tmp_path)
    (tmp_path / "platsync.toml").write_text("[nodes.hosp-b]\npg_port = 22000\nkeycloak_port = 22001\n"
                                            "mode_port = 22002\nmetrics_capture_port = 22003\n"
                                            "metrics_mode_port = 22004\n")
    s = load_settings(env={}, data_dir=tmp_path)
    assert s.pg_port("hosp-b") == 22000 and s.metrics_port("capture-hosp-b") == 22003
    assert s.metrics_port_setting("capture-hosp-b") == "[nodes.hosp-b] metrics_capture_port"
    assert s.metrics_port_setting("capture-local") == "metrics_capture_local_port"


def test_unknown_node_setting_and_unknown_node_are_named(tmp_path: Path) -> None:
    (tmp_path / "platsync.toml").write_text("[nodes.local]\npg_prot = 1\n")
    with pytest.raises(SettingsError, match="nodes.local: unknown setting 'pg_prot'"):
        load_settings(env={}, data_dir=tmp_path)
    s = load_settings(env={}, data_dir=tmp_path / "none")
    with pytest.raises(SettingsError, match=r"no settings for node 'hosp-x': add a \[nodes.hosp-x\] table"):
        s.pg_port("hosp-x")


def test_settings_file_round_trip(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path, topic_prefix='odd"prefix', metrics_worker_local_to_remote_port=23000)
    s = s.with_node("remote", pg_host="db.cloud", keycloak_db="host=x dbname=keycloak")
    cfg = tmp_path / "written.toml"
    cfg.write_text(settings_to_toml(s))
    assert load_settings(cfg, env={}) == s
    assert s.metrics_port("worker-local_to_remote") == 23000


def test_settings_do_no_file_io_for_credentials(tmp_path: Path) -> None:
    """The settings say where things are; credentials are resolved by streams.runtime.connections."""
    assert not any(hasattr(Settings, name) for name in ("dsn", "libpq_dsn", "pg_credentials", "keycloak_db_dsn"))
    s = load_settings(env={}, data_dir=tmp_path, pg_least_privilege=True)
    with pytest.raises(AccessPolicyError, match="platsync_capture on the local side"):
        libpq_dsn(s, "local", "meta", "capture")
