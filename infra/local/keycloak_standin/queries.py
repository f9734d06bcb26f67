"""SQL of the stand-in's user queries: Keycloak's tables, ``GET /users`` filters, UserRepresentations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, or_, select
from sqlalchemy.engine import Connection

from connectors.keycloak.schema import keycloak_metadata

METADATA = keycloak_metadata()
REALM: Table = METADATA.tables["realm"]
USER: Table = METADATA.tables["user_entity"]
CREDENTIAL: Table = METADATA.tables["credential"]
ATTRIBUTE: Table = METADATA.tables["user_attribute"]
ACTION: Table = METADATA.tables["user_required_action"]


def drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without null fields (Keycloak serialises representations with NON_NULL)."""
    return {k: v for k, v in doc.items() if v is not None}


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped.replace("*", "%") + "%"


def user_filters(realm_id: str, query: dict[str, str]) -> list[Any]:
    """WHERE clauses of ``GET /users``: ``search`` over username/e-mail/names, or field filters."""
    clauses: list[Any] = [USER.c.realm_id == realm_id, USER.c.service_account_client_link.is_(None)]
    fields = (USER.c.username, USER.c.email, USER.c.first_name, USER.c.last_name)
    search = query.get("search")
    if search is not None:
        term = search.strip()
        if term.startswith("id:"):
            clauses.append(USER.c.id == term[3:].strip())
        elif len(term) > 1 and term.startswith('"') and term.endswith('"'):
            clauses.append(or_(*(func.lower(f) == term[1:-1].lower() for f in fields)))
        elif term not in ("", "*"):
            clauses.append(or_(*(func.lower(f).like(_like(term), escape="\\") for f in fields)))
        return clauses
    exact = str(query.get("exact", "false")).lower() == "true"
    for key, column in zip(("username", "email", "firstName", "lastName"), fields, strict=True):
        value = query.get(key)
        if value is not None:
            clauses.append(func.lower(column) == value.lower() if exact
                           else func.lower(column).like(_like(value), escape="\\"))
    return clauses


def user_representations(conn: Connection, rows: Sequence[Any], brief: bool) -> list[dict[str, Any]]:
    """Keycloak's UserRepresentation of ``user_entity`` rows (``brief``: without attributes/actions)."""
    ids = [r.id for r in rows]
    attrs: dict[str, dict[str, list[str]]] = {i: {} for i in ids}
    actions: dict[str, list[str]] = {i: [] for i in ids}
    if ids and not brief:
        for a in conn.execute(select(ATTRIBUTE).where(ATTRIBUTE.c.user_id.in_(ids))
                              .order_by(ATTRIBUTE.c.name)):
            attrs[a.user_id].setdefault(a.name, []).append(a.long_value if a.value is None else a.value)
        for user_id, action in conn.execute(select(ACTION.c.user_id, ACTION.c.required_action).where(
                ACTION.c.user_id.in_(ids)).order_by(ACTION.c.required_action)):
            actions[user_id].append(action)
    reps = []
    for r in rows:
        rep = drop_none({"id": r.id, "username": r.username, "firstName": r.first_name, "lastName": r.last_name,
                         "email": r.email, "emailVerified": bool(r.email_verified),
                         "createdTimestamp": r.created_timestamp, "enabled": bool(r.enabled)})
        if not brief:
            if attrs[r.id]:
                rep["attributes"] = attrs[r.id]
            rep.update(totp=False, disableableCredentialTypes=[], requiredActions=actions[r.id],
                       notBefore=r.not_before, access={"manageGroupMembership": True, "view": True,
                                                       "mapRoles": True, "impersonate": True, "manage": True})
        reps.append(rep)
    return reps
