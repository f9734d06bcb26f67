"""What the network's row-listing commands share (``subscriptions``, ``notifications``): the hospitals of the
network in a data dir, and rows printed as JSON."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from streams.runtime.settings import Settings


def network_hospitals(settings: Settings, node: str | None, what: str) -> dict[str, Settings] | None:
    """The network's home links by hospital (``node``, if given, must be one); None after saying why on
    stderr (no network there: ``what`` says what needs one; an unknown hospital)."""
    # deferred: the embedded stack (~0.7 s); this module is imported by every 'platsync' run
    from infra.local.network import Network, is_network

    if not is_network(settings.data_dir):
        print(f"no network in {settings.data_dir}: {what} ('platsync up --topology FILE')", file=sys.stderr)
        return None
    links = Network.load(settings).all_links
    if node is not None and node not in links:
        print(f"unknown hospital {node!r}; known: {', '.join(links)}", file=sys.stderr)
        return None
    return links


def print_json_rows(rows: list[dict[str, Any]]) -> None:
    """Rows as a JSON array, times in ISO 8601."""
    print(json.dumps([{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows],
                     ensure_ascii=False, indent=2))
