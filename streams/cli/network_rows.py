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


class BadSince(ValueError):
    """A ``--since`` that is not an ISO date or time."""


def parse_since(text: str | None) -> datetime | None:
    """A ``--since`` option as an aware time (a naive one is the operator's local time); None if not given.
    :class:`BadSince`, with the message to print, if it is not ISO 8601."""
    if not text:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        raise BadSince(f"--since {text!r}: expected an ISO date or time "
                       "(2026-12-05 or 2026-12-05T09:00+09:00)") from None
    return since.astimezone() if since.tzinfo is None else since
