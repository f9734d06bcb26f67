"""The settings object: defaults < file < environment < options, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings, SettingsError, load_settings


def test_defaults_need_nothing(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path)
    assert s.broker_port == Settings.broker_port and s.data_dir == tmp_path.absolute()
    assert s.topic("local", "meta") == "platsync.local.meta"
    assert s.consumer_group("local_to_remote") == "platsync-local_to_remote"


def test_file_then_env_then_option_precedence(tmp_path: Path) -> None:
    (tmp_path / "platsync.toml").write_text("broker_port = 20000\npg_local_port = 20001\nworker_batch_size = 7\n")
    s = load_settings(env={"PLATSYNC_DATA_DIR": str(tmp_path), "PLATSYNC_PG_LOCAL_PORT": "20002"},
                      worker_batch_size=9)
    assert (s.broker_port, s.pg_local_port, s.worker_batch_size) == (20000, 20002, 9)


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
    assert "port=1111 dbname=meta" in s.libpq_dsn("local", "meta")
    assert s.dsn("remote", "fructos_patient").endswith(":2222/fructos_patient")
