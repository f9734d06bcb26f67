"""Commit times read from the stores themselves (``track_commit_timestamp``), and percentiles.

Every figure of the benchmark is a difference of PostgreSQL commit timestamps of both
instances (one machine, one clock): when a row was committed by the API on its source side
and when the engine's sink committed it on the target side. Polling only decides when to stop
waiting, so its interval never enters a figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.workload import TAGGED, connect
from streams.runtime.settings import Settings


def commit_times(settings: Settings, side: str, store: str, tag: str, min_version: int = 1,
                 dbname: str | None = None) -> dict[str, float]:
    """Commit time (epoch seconds) of the current version of every row carrying ``tag``."""
    table, column = TAGGED[store]
    query = (f"SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM {table} "  # noqa: S608
             f"WHERE {column} = %s AND version >= %s")
    with connect(settings, side, store, dbname) as conn:
        rows = conn.execute(query, (tag, min_version)).fetchall()
    missing = [r[0] for r in rows if r[1] is None]
    if missing:
        raise RuntimeError(f"{side}/{dbname or store}: no commit timestamp for {len(missing)} rows "
                           "(track_commit_timestamp must be on before they were written)")
    return {r[0]: float(r[1]) for r in rows}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
