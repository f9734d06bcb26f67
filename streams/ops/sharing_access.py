"""Least privilege of a network's sharing processes: their database roles and grants (docs/sharing.md).

Part of the policy of :mod:`streams.ops.access_policy` (which lists these roles beside the stores' ones, and
from which docs/security.md is generated); kept here because the sharing databases exist on a network only,
each on the nodes its process runs on:

- ``platsync_fanout`` (``fanout``, the cloud's ``sharing``): reads the subscriptions asked for, records those
  it opened and every shared document's latest state (drawing ``shared_documents_seq``); it cannot ask for or
  end a subscription, nor write the audit;
- ``platsync_app`` (the tenant's API role, ``sharing``): the subscription APIs (``PLAT_SUB_*``) ask for and end
  subscriptions and audit each call; of the fan-out's tables they read only what ``PLAT_SUB_003`` answers
  (never the copies the fan-out keeps);
- ``platsync_subscriber`` (``subscriber-<hospital>`` and its notifier, the hospital's ``fructos_subscribed``):
  applies its feed and records notifications and their delivery; it reads the webhook, never sets it;
- ``platsync_indexer`` (``indexer``, the cloud's ``patient_index``): records declarations; it cannot read the
  audit of index queries;
- ``platsync_declarer`` (``declarer-<server>``, each common server's ``fructos_patient``): reads and deletes the
  queued declarations of the outbox (:mod:`connectors.stores.index_outbox`); it can read or write no signed
  record (the outbox's trigger runs as its owner, the admin).

Every table name is checked against its store's SQLAlchemy metadata (a renamed table fails here, at import of
the policy, not in production); insert columns come from that metadata. The schemas are created by the
provisioning admin, never by these roles (infra/local/sharing_roles.py on the embedded stack).
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import MetaData

from connectors.stores.fanout_state import SEQUENCE, SHARING_DATABASE, sharing_metadata
from connectors.stores.index_outbox import OUTBOX
from connectors.stores.patient_index import INDEX_DATABASE, index_metadata
from connectors.stores.subscribed import SUBSCRIBED_STORE, subscribed_metadata
from streams.core.model import REPLICA_STORE
from streams.ops.access_model import NO_ADMIN, DbGrant, DbRole
from streams.runtime.credentials import (
    APP,
    DECLARER,
    FANOUT,
    INDEXER,
    SHARING_ROLE_NAMES,
    SUBSCRIBER,
    AccessPolicyError,
)

#: Each database the sharing roles are granted on, and where it is (a network's nodes).
SHARING_DATABASES: dict[str, str] = {SHARING_DATABASE: "the cloud", INDEX_DATABASE: "the cloud",
                                     SUBSCRIBED_STORE: "each hospital", REPLICA_STORE: "each common server"}
#: The node (settings node of a process's own stack) each sharing role connects to.
ROLE_NODES: dict[str, tuple[str, ...]] = {FANOUT: ("remote",), INDEXER: ("remote",), SUBSCRIBER: ("local",),
                                          DECLARER: ("remote", "<regional server>")}
#: Columns of a notification its delivery sets (connectors/stores/notifications.py).
DELIVERY_COLUMNS = ("published_at", "delivered_at", "attempts", "next_attempt_at", "last_error")
#: Columns of the fan-out's tables the subscription APIs read (``PLAT_SUB_003``: opened, documents covered).
OPENED_COLUMNS = ("node", "patient_id", "opened_at")
COVERED_COLUMNS = ("patient_id", "home", "withdrawn")


def sharing_db_roles() -> list[DbRole]:
    """The sharing processes' login roles (no REPLICATION, no DDL)."""
    attributes = (*NO_ADMIN, "NOREPLICATION")
    return [
        DbRole(FANOUT, SHARING_ROLE_NAMES[FANOUT], attributes, "fanout (network: the cloud)",
               "reads the subscriptions asked for; records those it opened and each shared document's latest "
               "state"),
        DbRole(SUBSCRIBER, SHARING_ROLE_NAMES[SUBSCRIBER], attributes,
               "subscriber-<hospital> and its notifier (network: the hospital)",
               "applies the hospital's feed to fructos_subscribed; records and delivers its notifications"),
        DbRole(INDEXER, SHARING_ROLE_NAMES[INDEXER], attributes, "indexer (network: the cloud)",
               "records the common servers' declarations in the patient index"),
        DbRole(DECLARER, SHARING_ROLE_NAMES[DECLARER], attributes,
               "declarer-<server> (network: each common server)",
               "reads and deletes the declarations queued in its shared store's outbox; no signed record"),
    ]


def _table(md: MetaData, database: str, name: str) -> str:
    """``name``, which must be a table of ``database``'s metadata."""
    if name not in md.tables:
        raise AccessPolicyError(f"the sharing policy names {database}.{name}, which its schema does not define")
    return name


def _columns(md: MetaData, database: str, table: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """``names``, which must be columns of ``table``."""
    missing = [c for c in names if c not in md.tables[_table(md, database, table)].columns]
    if missing:
        raise AccessPolicyError(f"the sharing policy names columns {missing} that {database}.{table} lacks")
    return names


def _input_columns(md: MetaData, table: str) -> tuple[str, ...]:
    """Columns an insert sets: those without a server default (ids and times are defaulted)."""
    return tuple(c.name for c in md.tables[table].columns if c.server_default is None and not c.primary_key)


def _grant(role: str, database: str, md: MetaData, table: str, *privileges: str) -> DbGrant:
    return DbGrant(role, database, "table", _table(md, database, table), privileges)


@cache
def sharing_grants() -> tuple[DbGrant, ...]:
    """Every grant of the sharing processes, on every sharing database."""
    db, md = SHARING_DATABASE, sharing_metadata()
    grants = [_grant(FANOUT, db, md, "subscriptions", "SELECT"),
              _grant(FANOUT, db, md, "fanout_subscriptions", "SELECT", "INSERT", "DELETE"),
              _grant(FANOUT, db, md, "shared_documents", "SELECT", "INSERT", "UPDATE"),
              DbGrant(FANOUT, db, "sequence", SEQUENCE, ("USAGE",))]
    audit = _table(md, db, "subscription_audit")
    grants += [_grant(APP, db, md, "subscriptions", "SELECT", "INSERT", "DELETE"),
               DbGrant(APP, db, "table", audit, ("INSERT",), _input_columns(md, audit)),
               DbGrant(APP, db, "identity", f"{audit}.id", ("USAGE",)),
               # SQLAlchemy's insert returns the new row's key: the API reads back that column, no other.
               DbGrant(APP, db, "table", audit, ("SELECT",), tuple(c.name for c in md.tables[audit].primary_key)),
               DbGrant(APP, db, "table", "fanout_subscriptions", ("SELECT",),
                       _columns(md, db, "fanout_subscriptions", OPENED_COLUMNS)),
               DbGrant(APP, db, "table", "shared_documents", ("SELECT",),
                       _columns(md, db, "shared_documents", COVERED_COLUMNS))]
    db, md = SUBSCRIBED_STORE, subscribed_metadata()
    grants += [_grant(SUBSCRIBER, db, md, "signed_records", "SELECT", "INSERT", "UPDATE", "DELETE"),
               _grant(SUBSCRIBER, db, md, "subscribed_patients", "SELECT", "INSERT", "DELETE"),
               _grant(SUBSCRIBER, db, md, "withdrawn_records", "SELECT", "INSERT", "UPDATE"),
               _grant(SUBSCRIBER, db, md, "notifications", "SELECT", "INSERT"),
               DbGrant(SUBSCRIBER, db, "table", "notifications", ("UPDATE",),
                       _columns(md, db, "notifications", DELIVERY_COLUMNS)),
               _grant(SUBSCRIBER, db, md, "notification_webhook", "SELECT")]
    db, md = INDEX_DATABASE, index_metadata()
    grants.append(_grant(INDEXER, db, md, "index_entries", "SELECT", "INSERT", "UPDATE"))
    # The outbox is plain DDL (its trigger with it), not SQLAlchemy metadata: its module names it.
    grants.append(DbGrant(DECLARER, REPLICA_STORE, "table", OUTBOX, ("SELECT", "DELETE")))
    return tuple(grants)


def sharing_connect_roles(database: str) -> tuple[str, ...]:
    """Role keys of the sharing policy that may connect to ``database`` (none for another database)."""
    return tuple(sorted({g.role for g in sharing_grants() if g.database == database}))


def sharing_process_roles() -> dict[str, list[tuple[str, str]]]:
    """Which role each sharing process connects with, where: process -> [(node, role key)]."""
    return {"fanout": [("remote", FANOUT)], "subscriber-<hospital>": [("local", SUBSCRIBER)],
            "indexer": [("remote", INDEXER)],
            "declarer-<server>": [(node, DECLARER) for node in ROLE_NODES[DECLARER]],
            "subscription APIs (PLAT_SUB_*)": [("remote", APP)]}
