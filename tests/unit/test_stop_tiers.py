"""``platsync down`` stops independent processes together, never one before what still uses it."""

from __future__ import annotations

from pathlib import Path

from infra.local.isolated import isolated_settings
from infra.local.stack import Component, components, stop_tiers


def test_clients_stop_together_then_the_broker_then_keycloak_then_postgresql(tmp_path: Path) -> None:
    order = [c for c in reversed(components(isolated_settings(tmp_path))) if c.kind != "capture"]
    tiers = [[c.name for c in tier] for tier in stop_tiers(order)]
    assert tiers[0] == [c.name for c in order if c.kind in ("fhir", "api", "mode", "worker")]
    assert {"worker-local_to_remote", "worker-remote_to_local", "mode-local", "api-local"} <= set(tiers[0])
    assert tiers[1:] == [["link"], ["broker"], ["keycloak-remote", "keycloak-local"], ["pg-remote", "pg-local"]]
    assert sorted(name for tier in tiers for name in tier) == sorted(c.name for c in order)  # each exactly once


def test_a_kind_reappearing_later_starts_a_new_tier() -> None:
    order = [Component("worker-a", "worker", "a"), Component("broker", "broker", ""),
             Component("mode-local", "mode", "local"), Component("pg-local", "postgres", "local")]
    assert [[c.name for c in t] for t in stop_tiers(order)] == [["worker-a"], ["broker"], ["mode-local"], ["pg-local"]]
