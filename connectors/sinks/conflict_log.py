"""Recording conflicts in ``platsync_conflict``, in the sink's transaction (docs/conflicts.md).

Each conflict row holds both versions of the row (``local_row``: the version of the local side,
``remote_row``: of the remote side; JSON with timestamps in UTC ISO 8601 and bytes in base64),
the API ids that wrote them where known, the winning side, the rule that decided, the side that
detected it and the incoming change. Its id names the lost version
(:func:`connectors.sinks.conflict_rule.conflict_id`), so the two sides' detections share it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.sinks import conflict_rule as rule
from streams.core.model import SIDES, Write

log = logging.getLogger("platsync.sink")

#: The JSON column holding each side's version of the row.
ROW_COLUMN: dict[str, str] = {side: f"{side}_row" for side in SIDES}

CONFLICT_SQL = """
INSERT INTO platsync_conflict (conflict_id, store, table_name, row_id, local_row, remote_row, local_api_id,
                               remote_api_id, winner, rule, detected_on, event_id)
VALUES (%(conflict_id)s, %(store)s, %(table_name)s, %(row_id)s, %(local_row)s, %(remote_row)s,
        %(local_api_id)s, %(remote_api_id)s, %(winner)s, %(rule)s, %(detected_on)s, %(event_id)s)
ON CONFLICT (conflict_id) DO NOTHING
"""


@dataclass
class Plan:
    """What one batch asks for one row: its deciding write and the states that write descends from."""

    write: Write
    params: dict[str, Any] | None = None  # typed row of an upsert
    rank: rule.RankKey | None = None
    known: set[rule.State] = field(default_factory=set)


def supersede(cur: psycopg.Cursor[Any], store: str, side: str, table: str,
              incoming: list[tuple[Plan, rule.Decision]], origin_side: str) -> None:
    """Resolve open conflicts whose lost version (from ``origin_side``) an incoming version built on."""
    column = ROW_COLUMN[origin_side]
    cur.execute("SELECT 1 FROM platsync_conflict WHERE status = 'open' AND table_name = %s AND winner = %s LIMIT 1",
                (table, side))
    if cur.fetchone() is None:  # the usual case: skip matching a whole bulk batch against nothing
        return
    cur.execute(f"SELECT conflict_id, row_id, {column}->>'version', {column}->>'updated_at' "  # noqa: S608
                "FROM platsync_conflict WHERE status = 'open' AND table_name = %s AND winner = %s "
                "AND row_id = ANY(%s)", (table, side, [p.write.key for p, _ in incoming]),
                prepare=False)  # planned per batch, like the sink's lookups (postgres_rows.py)
    losers: dict[str, dict[str, rule.State]] = {}
    for cid, row_id, version, updated_at in cur.fetchall():
        losers.setdefault(row_id, {})[cid] = rule.State(int(version), rule.utc(updated_at))
    updates = []
    for plan, decision in incoming:
        for cid in rule.superseded(losers.get(plan.write.key, {}), plan.known):
            assert plan.rank is not None
            outcome = "was kept" if decision.apply else (
                f"lost too (conflict {rule.conflict_id(store, table, plan.write.key, plan.rank)})")
            updates.append({"id": cid, "note": f"superseded: a later {origin_side} version "
                            f"(v{plan.write.version}) built on the lost one and {outcome}"})
    if updates:
        cur.executemany("UPDATE platsync_conflict SET status = 'resolved', resolved_at = now(), "
                        "resolution = %(note)s WHERE conflict_id = %(id)s AND status = 'open'", updates)


def record(cur: psycopg.Cursor[Any], store: str, side: str, table: str,
           found: list[tuple[Plan, dict[str, Any], rule.Decision]], origin_side: str) -> None:
    """Insert one ``platsync_conflict`` row per conflict (same transaction as the rows)."""
    apis = _api_ids_of_transactions(cur, [row["platsync_xmin"] for _, row, _ in found])
    params = []
    for plan, row, decision in found:
        assert plan.params is not None and plan.rank is not None
        here = {k: v for k, v in row.items() if k != "platsync_xmin"}
        mine, theirs = _json_row(here), _json_row(plan.params)
        sides = {side: (mine, apis.get(row["platsync_xmin"])), origin_side: (theirs, plan.write.api_id)}
        loser = rule.rank_key(here) if decision.apply else plan.rank
        cid = rule.conflict_id(store, table, plan.write.key, loser)
        winner = origin_side if decision.apply else side
        params.append({"conflict_id": cid, "store": store, "table_name": table,
                       "row_id": plan.write.key, "local_row": Jsonb(sides["local"][0]),
                       "remote_row": Jsonb(sides["remote"][0]), "local_api_id": sides["local"][1],
                       "remote_api_id": sides["remote"][1], "winner": winner, "rule": decision.rule,
                       "detected_on": side, "event_id": plan.write.event_id})
        log.warning("conflict %s on %s/%s %s %s: %s version kept (%s)", cid, side, store,
                    table, plan.write.key, winner, decision.rule)
    cur.executemany(CONFLICT_SQL, params)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON for the conflict record (timestamps ISO 8601 UTC, bytes base64)."""
    return {k: rule.jsonable(v) for k, v in row.items()}


def _api_ids_of_transactions(cur: psycopg.Cursor[Any], xmins: list[int]) -> dict[int, str]:
    """API id of the transaction that last wrote each row (by its 32-bit ``xmin``), where an API
    marker says it; rows the engine itself applied have none here."""
    cur.execute("SELECT DISTINCT ON (txid %% 4294967296) txid %% 4294967296, api_id FROM platsync_txn_marker "
                "WHERE txid %% 4294967296 = ANY(%s) AND NOT applied_by_sync "
                "ORDER BY txid %% 4294967296, id DESC", (xmins,))
    return {int(x): str(api) for x, api in cur.fetchall()}


