"""Per-node number ranges (issue 14): in the settings (file round trip, clear errors), as the stores use
them (serials.side_range), and as a topology gives them to a hospital's home link."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.stores.serials import (
    DOCUMENT_NUMBER,
    DOCUMENT_NUMBER_RANGES,
    PATIENT_NUMBER,
    PATIENT_NUMBER_RANGES,
    SerialRangeError,
    side_range,
)
from streams.runtime.node_settings import NodeSettings, alias_names
from streams.runtime.settings import SettingsError, load_settings
from streams.runtime.settings_file import settings_to_toml
from streams.topology.load import default_topology, load_topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"
CLOUD = {"patient_numbers": (500_000_000, 999_999_999), "document_numbers": (5_000_000_000, 9_999_999_999)}
BLOCK_0 = {"patient_numbers": (1, 9_999_999), "document_numbers": (1, 99_999_999)}
BLOCK_1 = {"patient_numbers": (10_000_000, 19_999_999), "document_numbers": (100_000_000, 199_999_999)}


# --- settings --------------------------------------------------------------------------------------------

def test_ranges_are_unset_by_default_and_the_settings_file_does_not_change(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path)
    assert all(node.patient_numbers is None and node.document_numbers is None for node in s.nodes.values())
    assert "numbers" not in settings_to_toml(s)  # every settings file written so far stays byte for byte
    assert not any("numbers" in name for name in alias_names())  # [nodes.<id>] tables only


def test_ranges_round_trip_through_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "platsync.toml").write_text("[nodes.local]\npatient_numbers = [10000000, 19999999]\n"
                                            "document_numbers = [100000000, 199999999]\n")
    s = load_settings(env={}, data_dir=tmp_path)
    assert (s.node("local").patient_numbers, s.node("local").document_numbers) == tuple(BLOCK_1.values())
    assert s.node("remote").patient_numbers is None
    text = settings_to_toml(s)
    assert "patient_numbers = [10000000, 19999999]" in text
    written = tmp_path / "written.toml"
    written.write_text(text)
    assert load_settings(written, env={}) == s
    s = s.with_node("remote", **CLOUD)
    written.write_text(settings_to_toml(s))
    assert load_settings(written, env={}) == s


@pytest.mark.parametrize("value", ["[0, 9]", "[9, 1]", "[1, 1000000000]", "[1, 2, 3]", '"1-9"', "[true, 9]",
                                   "[1.0, 9]", "5"])
def test_a_bad_range_in_the_file_names_the_file_the_node_and_what_is_expected(tmp_path: Path, value: str) -> None:
    (tmp_path / "platsync.toml").write_text(f"[nodes.local]\npatient_numbers = {value}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(env={}, data_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'platsync.toml'}: nodes.local.patient_numbers expects [lo, hi], two "
                              "integers with 1 <= lo <= hi <= 999999999 (9-digit numbers), got "), message


def test_a_document_range_may_use_ten_digits_and_no_more(tmp_path: Path) -> None:
    assert NodeSettings(1, 2, 3, 4, 5, document_numbers=(1, 9_999_999_999)).document_numbers == (1, 9_999_999_999)
    with pytest.raises(SettingsError, match=r"document_numbers expects .* <= 9999999999 \(10-digit numbers\)"):
        NodeSettings(1, 2, 3, 4, 5, document_numbers=(1, 10_000_000_000))


def test_ranges_given_in_code_are_checked_and_kept_as_tuples(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path)
    assert s.with_node("local", patient_numbers=[1, 9]).node("local").patient_numbers == (1, 9)
    with pytest.raises(SettingsError, match=r"patient_numbers expects \[lo, hi\]"):
        s.with_node("local", patient_numbers=(9, 1))


def test_overlapping_ranges_of_two_nodes_are_refused(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path)
    with pytest.raises(SettingsError, match=r"nodes.local.patient_numbers \[1, 500000000\] overlaps "
                                            r"nodes.remote.patient_numbers \[500000000, 999999999\]"):
        s.with_node("local", patient_numbers=(1, 500_000_000))  # against remote's default
    with pytest.raises(SettingsError, match="nodes.local.document_numbers .* overlaps nodes.remote"):
        s.with_node("remote", document_numbers=(1, 9)).with_node("local", document_numbers=(5, 20))


# --- the stores' view --------------------------------------------------------------------------------------

def test_a_side_draws_from_its_configured_range_else_its_default(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path)
    for side in ("local", "remote"):
        assert side_range(s, side, PATIENT_NUMBER) == PATIENT_NUMBER_RANGES[side]
        assert side_range(s, side, DOCUMENT_NUMBER) == DOCUMENT_NUMBER_RANGES[side]
    s = s.with_node("local", **BLOCK_1)
    assert side_range(s, "local", PATIENT_NUMBER) == BLOCK_1["patient_numbers"]
    assert side_range(s, "local", DOCUMENT_NUMBER) == BLOCK_1["document_numbers"]
    unranged = dataclasses.replace(s.node("local"), patient_numbers=None, document_numbers=None)
    other = dataclasses.replace(s, nodes={**s.nodes, "hosp-c": unranged})
    with pytest.raises(SerialRangeError, match=r"no patient number range for the hosp-c side: set \[nodes.hosp-c\] "
                                               r"patient_numbers = \[lo, hi\]"):
        side_range(other, "hosp-c", PATIENT_NUMBER)


# --- a topology's home links -------------------------------------------------------------------------------

def test_default_topology_gives_today_s_two_site_ranges() -> None:
    numbers = default_topology().home_link_numbers("local")
    assert numbers == {side: {"patient_numbers": PATIENT_NUMBER_RANGES[side],
                              "document_numbers": DOCUMENT_NUMBER_RANGES[side]} for side in ("local", "remote")}
    assert load_topology(TOPOLOGIES / "default.toml").home_link_numbers("local") == numbers


@pytest.mark.parametrize("name", ["two_hospitals.toml", "regional.toml"])
def test_a_hospital_s_link_has_its_ranges_and_the_cloud_root_s(name: str, tmp_path: Path) -> None:
    topology = load_topology(TOPOLOGIES / name)
    expected = {"hosp-a": BLOCK_0, "hosp-b": BLOCK_1}
    for hospital in topology.hospitals:
        numbers = topology.home_link_numbers(hospital.id)
        # the cloud root's range even under a regional server (region-1 has block 2): the home link goes to the root
        assert numbers == {"local": expected[hospital.id], "remote": CLOUD}, hospital.id
        # what a link's settings get: valid, disjoint, and written and read back unchanged
        base = load_settings(env={}, data_dir=tmp_path)
        link = base.with_node("local", **numbers["local"]).with_node("remote", **numbers["remote"])
        for side in ("local", "remote"):
            assert side_range(link, side, PATIENT_NUMBER) == numbers[side]["patient_numbers"]
        written = tmp_path / f"{hospital.id}.toml"
        written.write_text(settings_to_toml(link))
        assert load_settings(written, env={}) == link


def test_only_a_hospital_has_a_home_link() -> None:
    topology = load_topology(TOPOLOGIES / "regional.toml")
    with pytest.raises(ValueError, match="region-1 is a common node: only a hospital has a home link"):
        topology.home_link_numbers("region-1")
    with pytest.raises(KeyError):
        topology.home_link_numbers("hosp-z")
