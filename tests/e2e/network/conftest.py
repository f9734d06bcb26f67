"""One running network for the network tests: the regional topology (infra/topologies/regional.toml).

Two hospitals under ``region-1`` under the cloud: it has everything the two-hospital topology has (two
home links straight to the cloud) plus a regional server, so the tests of home links, of the regional
server and the randomized convergence run share one network (started once: about a minute), which is
drained and stopped after the last test of this package.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.network import Network
from streams.topology.load import load_topology
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir

REPO = Path(__file__).resolve().parents[3]
TOPOLOGY = REPO / "infra" / "topologies" / "regional.toml"
HOSPITALS = ("hosp-a", "hosp-b")
REGION = "region-1"


@pytest.fixture(scope="package")
def network() -> Iterator[Network]:
    """The running regional network; stopped after the package's last test."""
    data_dir = make_data_dir("platsync-net-")
    net = Network(isolated_settings(data_dir), load_topology(TOPOLOGY))
    try:
        net.up(say=lambda m: print(f"[network] {m}"))
        yield net
    finally:
        net.down(say=lambda m: print(f"[network] {m}"), drain_timeout_s=0)
        remove_data_dir(data_dir)
