"""Concurrent changes of one Keycloak account on both sides (e.g. PRV_ATH_001 during a cut).

The account events carry, as their before-image, the fingerprint of the state the source side
last knew to be on both sides (``{"fingerprint": ...}``, set by the Keycloak converter). The
sink compares it with the target's current account:

- the target has no such account, already has the incoming state, is at the incoming change's
  base state, or is still at the state last received from the other side -> apply (no conflict);
- otherwise both sides changed the account independently -> a conflict, decided the same way on
  both sides by :func:`account_winner` and recorded in META's ``platsync_conflict`` with both
  versions (credentials never: only whether a password is set, and the state fingerprints).

Rule: the more restrictive state wins (deleted beats existing, disabled beats enabled), so an
account locked on either side during an outage stays locked; otherwise the state with the
greater fingerprint wins (arbitrary but identical on both sides, and no clock is trusted).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg

from connectors.keycloak.accounts import Account

STORE, TABLE = "keycloak", "keycloak_account"


def _key(account: Account) -> tuple[bool, bool, str]:
    return account.deleted, account.deleted or not account.enabled, account.fingerprint()


def account_winner(incoming: Account, current: Account) -> tuple[bool, str]:
    """(True if ``incoming`` wins, the rule that decided) for two concurrent account states."""
    a, b = _key(incoming), _key(current)
    if a[0] != b[0]:
        return a > b, "deleted beats existing"
    if a[1] != b[1]:
        return a > b, "disabled beats enabled"
    return a > b, "greater state fingerprint"


def is_conflict(incoming: Account, current: Account | None, base_fingerprint: str | None,
                last_received_fingerprint: str | None) -> bool:
    """True if ``current`` is a change of the target side that ``incoming`` was not based on."""
    if current is None:
        return False
    fingerprint = current.fingerprint()
    return fingerprint not in (incoming.fingerprint(), base_fingerprint, last_received_fingerprint)


def summary(account: Account) -> dict[str, Any]:
    """An account version for human review, without any credential material."""
    return {"username": account.username, "enabled": account.enabled, "deleted": account.deleted,
            "email": account.email, "first_name": account.first_name, "last_name": account.last_name,
            "attributes": account.attributes, "required_actions": list(account.required_actions),
            "password_set": account.password is not None, "fingerprint": account.fingerprint()}


def record_conflict(meta: psycopg.Connection[Any], side: str, origin_side: str, incoming: Account,
                    current: Account, incoming_wins: bool, rule: str, api_id: str, event_id: str) -> str:
    """Insert the conflict into this side's META ``platsync_conflict`` (once per losing state); return its id."""
    # Like the record conflicts: identified by the version that lost, which both sides agree on.
    loser = current if incoming_wins else incoming
    conflict_id = hashlib.sha256("|".join((STORE, TABLE, incoming.username, loser.fingerprint())).encode()).hexdigest()
    rows = {origin_side: summary(incoming), side: summary(current)}
    winner = origin_side if incoming_wins else side
    meta.execute(
        "INSERT INTO platsync_conflict (conflict_id, store, table_name, row_id, local_row, remote_row, "
        "local_api_id, remote_api_id, winner, rule, detected_on, event_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (conflict_id) DO NOTHING",
        (conflict_id, STORE, TABLE, incoming.username, json.dumps(rows["local"]), json.dumps(rows["remote"]),
         api_id if origin_side == "local" else None, api_id if origin_side == "remote" else None,
         winner, rule, side, event_id))
    return conflict_id
