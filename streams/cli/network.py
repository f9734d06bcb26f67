"""The command line over a network (``platsync up --topology FILE``): nodes, links and their stacks.

A network's data dir holds one two-party stack per home link (infra/local/network.py). Commands that
act on one node resolve it here to that link's settings and side: a hospital id is the ``local`` side
of its home link; ``<cloud>.<hospital>`` (``remote.hosp-a``) is that institution's stores in the cloud,
the ``remote`` side of the same link. Without a network, the nodes are ``local`` and ``remote``.
"""

from __future__ import annotations

from infra.local.network import Network, is_network
from streams.core.errors import PlatSyncError
from streams.core.model import SIDES
from streams.runtime.settings import Settings


class UnknownNodeError(PlatSyncError, ValueError):
    """A ``--node`` names no node of the running topology."""


def known_nodes(settings: Settings) -> list[str]:
    """The node names ``--node`` accepts for this data dir."""
    if not is_network(settings.data_dir):
        return list(SIDES)
    network = Network.load(settings)
    root = network.topology.root.id
    return [name for hospital in network.links for name in (hospital, f"{root}.{hospital}")]


def resolve_node(settings: Settings, node: str) -> tuple[Settings, str]:
    """(the two-party settings, the side) that ``node`` names; :class:`UnknownNodeError` listing the known ones."""
    if not is_network(settings.data_dir):
        if node in SIDES:
            return settings, node
    else:
        network = Network.load(settings)
        root = network.topology.root.id
        for hospital, link in network.links.items():
            if node == hospital:
                return link, "local"
            if node == f"{root}.{hospital}":
                return link, "remote"
    raise UnknownNodeError(f"unknown node {node!r}; known: {', '.join(known_nodes(settings))}")


def link_settings_of(settings: Settings) -> dict[str, Settings]:
    """Every two-party stack of the data dir: the home links of a network, or the one standalone stack."""
    if not is_network(settings.data_dir):
        return {"": settings}
    return dict(Network.load(settings).links)
