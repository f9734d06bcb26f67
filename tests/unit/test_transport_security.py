"""Links that leave the machine are TLS + SASL: plaintext is refused on any non-loopback address (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.broker import Broker
from infra.local.process import ProcessError
from streams.runtime.settings import SettingsError, is_loopback, load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.2.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("10.1.2.3", False), ("kafka.example.org", False), ("::", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("overrides", [
    {"host": "0.0.0.0"},
    {"host": "10.1.2.3", "broker_security_protocol": "ssl"},
    {"broker_bootstrap_servers": "127.0.0.1:9092,kafka-2.example.org:9093"},
])
def test_plaintext_or_tls_without_sasl_off_loopback_is_refused(tmp_path: Path, overrides: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=r"non-loopback address .* must use TLS \+ SASL"):
        load_settings(env={}, data_dir=tmp_path, **overrides)


def test_sasl_ssl_off_loopback_and_plaintext_on_loopback_are_accepted(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path, host="0.0.0.0", broker_security_protocol="sasl_ssl",
                      broker_bootstrap_servers="kafka.example.org:9093")
    assert s.broker_bootstrap == "kafka.example.org:9093"
    assert load_settings(env={}, data_dir=tmp_path, broker_bootstrap_servers="localhost:9092").host == "127.0.0.1"


def test_an_explicitly_named_test_cluster_may_stay_plaintext(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path, broker_bootstrap_servers="172.17.0.1:32768",
                      broker_plaintext_hosts="172.17.0.1")
    assert s.broker_security_protocol == "plaintext"
    with pytest.raises(SettingsError, match="172.17.0.1"):
        load_settings(env={}, data_dir=tmp_path, broker_bootstrap_servers="172.17.0.1:32768",
                      broker_plaintext_hosts="172.17.0.2")


def test_the_embedded_broker_listens_on_loopback_only() -> None:
    behind_proxy = Broker("0.0.0.0", 19092, 19093).spec().argv
    assert behind_proxy[behind_proxy.index("--listener-url") + 1] == "tcp://127.0.0.1:19093"
    with pytest.raises(ProcessError, match="speaks plaintext and would listen on 10.0.0.5"):
        Broker("10.0.0.5", 19092).spec()


def test_the_cli_refuses_to_start_with_plaintext_off_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "PLATSYNC_DATA_DIR": str(tmp_path), "PLATSYNC_HOST": "0.0.0.0"}
    env.pop("PLATSYNC_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "streams.cli.main", "up", "--detach"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "non-loopback address (0.0.0.0)" in done.stderr and "sasl_ssl" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing was started
