"""Least privilege as data: the PostgreSQL roles and grants, the Kafka principals and ACLs.

One place (docs/security.md is generated from here by ``platsync access --format markdown``).
Every grant is derived from the table definitions (:mod:`connectors.stores.tables`,
:mod:`connectors.keycloak.schema`), the captured tables (:mod:`connectors.capture.debezium`) and
the routing model (:mod:`streams.core.model`); nothing here lists a table that those modules define.

Database roles exist on both sides' PostgreSQL instances under the same names; their passwords
differ per side (generated once into ``<data_dir>/secrets/`` unless the settings give them), so a
credential of one side's process does not open the other side's databases:

- ``platsync_capture`` (LOGIN REPLICATION): the Debezium capture of its own side. Reads the captured
  tables; the publications are created by the provisioning admin, so it owns nothing.
- ``platsync_apply``: the worker of the route that targets its side. Writes the target tables and the
  engine's bookkeeping (marker rows as ``applied_by_sync``, tombstones, conflicts, progress); no DDL,
  no REPLICATION.
- ``platsync_app``: the hospital application (reference API). Writes the store tables and stamps its
  transactions with ``platsync_mark_api``; it cannot mark a transaction as applied by the sync.
- ``platsync_operator``: the operator tools. Reads the stores; may mark conflicts resolved and insert
  sync probes. It cannot read Keycloak's credential tables.
- ``platsync_fhir``: the cloud's FHIR worker (docs/fhir.md). Reads the shared store's signed records; keeps
  the 6 information summary and the submission queue; consumes the queue of changed FHIR documents.
- the admin (``pg_user``): provisioning, DDL, publications.

A network's sharing processes (fan-out, subscribers, indexer, declarers) have roles of their own, provisioned
on the nodes they run on only: :mod:`streams.ops.sharing_access`; :func:`db_roles` and :func:`process_roles`
list them too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

from connectors.capture.debezium import captured_tables
from connectors.keycloak.schema import keycloak_metadata
from connectors.stores.fhir_summary import DOCUMENTS as FHIR_DOCUMENTS
from connectors.stores.fhir_summary import OUTBOX as FHIR_OUTBOX
from connectors.stores.fhir_summary import SIX as FHIR_SIX
from connectors.stores.fhir_summary import SUBMISSIONS as FHIR_SUBMISSIONS
from connectors.stores.fhir_summary import fhir_metadata
from connectors.stores.master_schema import MASTER_TABLE, TARGETS_TABLE, VERSION_SEQUENCE
from connectors.stores.origins import ORIGIN_FUNCTIONS
from connectors.stores.serials import SERIALS
from connectors.stores.tables import SYNCED_TABLES, metadata_for
from streams.core.model import DATABASE_STORES, REPLICA_STORE, ROUTES, SHARED_STORES, SIDES
from streams.ops.access_model import NO_ADMIN, DbGrant, DbRole  # DbGrant, DbRole: part of this module's API
from streams.ops.dlq import OPERATOR_CLIENT_ID, retried_topic
from streams.ops.sharing_access import sharing_db_roles, sharing_process_roles
from streams.routing.matrix_model import load_matrix
from streams.runtime.credentials import (
    ADMIN,
    APP,
    APPLY,
    CAPTURE,
    FHIR,
    OPERATOR,
    ROLE_NAMES,
    AccessPolicyError,
)
from streams.runtime.topics import incarnation_topic
from streams.topology.load import default_topology
from streams.topology.plan import NetworkPlan, build_plan

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    from streams.runtime.settings import Settings

KEYCLOAK_DB = "keycloak"
MARKER = "platsync_txn_marker"
PROBE = "platsync_probe"
CONFLICT = "platsync_conflict"
#: Share-state changes, written by the API in the same transaction (docs/sharing.md).
SHARE_AUDIT = "platsync_share_audit"
#: Bookkeeping tables the sinks and the progress recorder write (where the store's schema has them).
APPLY_BOOKKEEPING = ("platsync_tombstone", "platsync_row_sync", CONFLICT, "platsync_progress",
                     "platsync_keycloak_applied")
#: Read by each side's capture in its own META: the Keycloak sink's apply tokens (echo detection).
CAPTURE_ALSO_READS = ("platsync_keycloak_applied",)
#: Columns of ``platsync_conflict`` an operator's ``conflicts resolve`` sets.
CONFLICT_RESOLUTION_COLUMNS = ("status", "resolved_at", "resolution")
#: The marker column only the sync may set.
BY_SYNC_COLUMN = "applied_by_sync"



def db_roles(settings: Settings) -> list[DbRole]:
    """Every database role, the admin first; the sharing processes' roles last (a network's only)."""
    return [
        DbRole(ADMIN, settings.pg_user, ("SUPERUSER", "LOGIN"), "platsync up (provisioning), Keycloak stand-in",
               "creates databases, schemas, roles, grants and publications; Keycloak's own database owner"),
        DbRole(CAPTURE, ROLE_NAMES[CAPTURE], (*NO_ADMIN, "REPLICATION"),
               "capture-<side> on its own side; resync, recovery-copy",
               "logical replication (pgoutput) of the captured tables through a publication created in advance"),
        DbRole(APPLY, ROLE_NAMES[APPLY], (*NO_ADMIN, "NOREPLICATION"), "worker of the route targeting the side",
               "applies the other side's changes to the target stores, records progress and conflicts"),
        DbRole(APP, ROLE_NAMES[APP], (*NO_ADMIN, "NOREPLICATION"), "reference API (the hospital application)",
               "writes the source stores; stamps each transaction with its API id (never as applied by sync)"),
        DbRole(OPERATOR, ROLE_NAMES[OPERATOR], (*NO_ADMIN, "NOREPLICATION"),
               "status, inspect, conflicts, recovery-report/-copy, wait-synced, fhir summary/submissions",
               "reads the stores; marks conflicts resolved; inserts sync probes"),
        DbRole(FHIR, ROLE_NAMES[FHIR], (*NO_ADMIN, "NOREPLICATION"), "fhir-remote (the cloud's FHIR worker)",
               "reads the shared store's signed records; keeps the 6 information summary and the submissions"),
        *sharing_db_roles(),
    ]


def _metadata(database: str) -> MetaData:
    if database == KEYCLOAK_DB:

        return keycloak_metadata()

    return metadata_for(database)


def _input_columns(database: str, table: str) -> tuple[str, ...]:
    """Columns a writer sets: those without a server default (ids, ``txid``, flags and times are defaulted)."""
    columns = _metadata(database).tables[table].columns
    return tuple(c.name for c in columns if c.server_default is None and not c.primary_key)


@cache
def _database_grants(database: str) -> tuple[DbGrant, ...]:

    tables = list(_metadata(database).tables)
    if database == KEYCLOAK_DB:
        # The capture and the Keycloak sink read accounts as Keycloak stores them; Keycloak (the
        # stand-in) writes them itself; operators never read credential hashes.
        return tuple(DbGrant(role, database, "table", t, ("SELECT",)) for role in (CAPTURE, APPLY) for t in tables)
    captured = [t.removeprefix("public.") for t in captured_tables(database)]
    synced = SYNCED_TABLES[database]
    marker_in = _input_columns(database, MARKER)
    grants = [DbGrant(CAPTURE, database, "table", t, ("SELECT",))
              for t in (*captured, *(t for t in CAPTURE_ALSO_READS if t in tables))]
    grants += [DbGrant(APPLY, database, "table", t, ("SELECT", "INSERT", "UPDATE", "DELETE")) for t in synced]
    grants += [DbGrant(APPLY, database, "table", t, ("SELECT", "INSERT", "UPDATE"))
               for t in APPLY_BOOKKEEPING if t in tables]
    grants += [DbGrant(APPLY, database, "table", MARKER, ("SELECT",)),
               DbGrant(APPLY, database, "table", MARKER, ("INSERT",), (*marker_in, BY_SYNC_COLUMN))]
    # PostgreSQL >= 16: each sink session tags its transactions with a replication origin, which the
    # captures' pgoutput leaves out (origin = none); the functions exist on 15 too (connectors/stores/origins.py).
    grants += [DbGrant(APPLY, database, "function", f, ("EXECUTE",)) for f in ORIGIN_FUNCTIONS]
    grants += [DbGrant(APP, database, "table", t, ("SELECT", "INSERT", "UPDATE")) for t in synced]
    grants += [DbGrant(APP, database, "table", MARKER, ("SELECT",)),
               DbGrant(APP, database, "table", MARKER, ("INSERT",), marker_in)]
    if database in SHARED_STORES:
        # The cloud's API withdraws a document made private from the shared store (docs/sharing.md):
        # it removes the copy and leaves a tombstone, so that no late copy of an older version returns.
        grants += [DbGrant(APP, database, "table", "signed_records", ("DELETE",)),
                   DbGrant(APP, database, "table", "platsync_tombstone", ("SELECT", "INSERT", "UPDATE"))]
    if database == "meta":
        grants += [DbGrant(APP, database, "table", SHARE_AUDIT, ("INSERT",), _input_columns(database, SHARE_AUDIT)),
                   DbGrant(APP, database, "identity", f"{SHARE_AUDIT}.id", ("USAGE",))]
        # UPDATE: a given number of the side's range advances the sequence past it (serials.claim_given_numbers).
        grants += [DbGrant(APP, database, "sequence", s.sequence, ("USAGE", "SELECT", "UPDATE")) for s in SERIALS]
        # `platsync master` (docs/master.md): an import deletes the institutions gone from the file; the triggers
        # draw each new version from the master's sequence and re-read the target list.
        grants += [DbGrant(APP, database, "table", MASTER_TABLE, ("DELETE",)),
                   DbGrant(APP, database, "table", TARGETS_TABLE, ("SELECT", "INSERT", "UPDATE", "DELETE")),
                   DbGrant(APP, database, "sequence", VERSION_SEQUENCE, ("USAGE",))]
    grants += [DbGrant(OPERATOR, database, "table", t, ("SELECT",)) for t in tables]
    grants += [DbGrant(OPERATOR, database, "table", CONFLICT, ("UPDATE",), CONFLICT_RESOLUTION_COLUMNS),
               DbGrant(OPERATOR, database, "table", PROBE, ("INSERT",), _input_columns(database, PROBE)),
               DbGrant(OPERATOR, database, "identity", f"{PROBE}.id", ("USAGE",))]
    return tuple(grants)


def _fhir_grants(database: str) -> list[DbGrant]:
    """The FHIR worker's grants on a shared store, and the operator's reads of its tables (docs/fhir.md)."""
    md = fhir_metadata()
    for table in (FHIR_DOCUMENTS, FHIR_SIX, FHIR_SUBMISSIONS):
        if table not in md.tables:
            raise AccessPolicyError(f"the policy names {database}.{table}, which its schema does not define")
    return [DbGrant(FHIR, database, "table", "signed_records", ("SELECT",)),
            # The queue is plain DDL (its trigger with it), not SQLAlchemy metadata: its module names it.
            DbGrant(FHIR, database, "table", FHIR_OUTBOX, ("SELECT", "DELETE")),
            DbGrant(FHIR, database, "table", FHIR_DOCUMENTS, ("SELECT", "INSERT", "DELETE")),
            DbGrant(FHIR, database, "table", FHIR_SIX, ("SELECT", "INSERT", "DELETE")),
            DbGrant(FHIR, database, "table", FHIR_SUBMISSIONS, ("SELECT", "INSERT", "UPDATE")),
            DbGrant(FHIR, database, "identity", f"{FHIR_SUBMISSIONS}.id", ("USAGE",)),
            *(DbGrant(OPERATOR, database, "table", t, ("SELECT",))
              for t in (FHIR_OUTBOX, FHIR_DOCUMENTS, FHIR_SIX, FHIR_SUBMISSIONS))]


def side_databases(side: str) -> tuple[str, ...]:
    """The databases of one side's instance the policy covers (store databases and Keycloak's); a
    regional server (any node but the two sides) has its replica store only."""
    if side not in DATABASE_STORES:
        return (REPLICA_STORE,)
    return (*DATABASE_STORES[side], KEYCLOAK_DB)


def db_grants(side: str) -> list[DbGrant]:
    """Every grant on ``side``'s instance (the same on both sides, over the databases each has); the FHIR worker's
    on the cloud's shared store only (its tables exist there alone: docs/fhir.md)."""
    grants = [g for database in side_databases(side) for g in _database_grants(database)]
    if side == "remote":
        grants += [g for database in side_databases(side) if database in SHARED_STORES for g in _fhir_grants(database)]
    return grants


def connect_roles(side: str, database: str) -> tuple[str, ...]:
    """Roles that may connect to ``database`` (CONNECT is revoked from PUBLIC)."""
    roles = {g.role for g in db_grants(side) if g.database == database}
    if database == KEYCLOAK_DB:
        roles.add(OPERATOR)  # wait-synced emits its Keycloak probe as a logical message there
    return tuple(sorted(roles))


def process_roles() -> dict[str, list[tuple[str, str]]]:
    """Which role each process connects with, where: process -> [(side, role key)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for side in SIDES:
        out[f"capture-{side}"] = [(side, CAPTURE)]
        out[f"reference-api-{side}"] = [(side, APP)]
        out[f"api-{side}"] = [(side, APP)]  # the same API over HTTP (connectors/reference_api/http_server.py)
    for route, (_, target) in ROUTES.items():
        out[f"worker-{route}"] = [(target, APPLY)]
    out["operator"] = [(side, OPERATOR) for side in SIDES]
    out["fhir-remote"] = [("remote", FHIR)]
    out.update(sharing_process_roles())
    out["provisioning"] = [(side, ADMIN) for side in SIDES]
    return out


# --- Kafka ---------------------------------------------------------------------------------------

ResourceType = Literal["topic", "group", "cluster", "transactionalId"]
Pattern = Literal["literal", "prefixed"]


@dataclass(frozen=True)
class KafkaAcl:
    """One allow rule: ``principal`` (a user name) may do ``operations`` on the resource."""

    principal: str
    resource_type: ResourceType
    name: str
    pattern: Pattern
    operations: tuple[str, ...]


def default_plan() -> NetworkPlan:
    """The plan of the default topology (hospital ``local``, cloud ``remote``) under the packaged matrix."""
    return build_plan(default_topology(), load_matrix())


def plan_principals(settings: Settings, plan: NetworkPlan) -> dict[str, str]:
    """Process name -> Kafka user name for every process of ``plan`` that talks to Kafka, and the operator."""
    processes = [p for p in plan.processes() if not p.startswith("pg-")]
    return {process: plan.principal(settings.topic_prefix, process)
            for process in (*processes, *plan.subscription_processes(), "operator")}


def kafka_acls(settings: Settings, plan: NetworkPlan | None = None) -> list[KafkaAcl]:
    """Every ACL, per principal, for the processes of ``plan`` (default: today's two-party deployment).

    Topics are created by the administrator (``platsync up`` or Strimzi ``KafkaTopic`` resources): no
    process needs Create, except the operator's own bookkeeping topic. Each process may read only the
    topics of the route it applies (:func:`streams.topology.plan.isolation_faults` checks that no
    hospital's process may read another institution's topics)."""
    plan = plan or default_plan()
    prefix = settings.topic_prefix
    users = plan_principals(settings, plan)
    acls: list[KafkaAcl] = []
    for endpoint in (e for e in plan.endpoints if e.captured):
        user = users[f"capture-{endpoint.id}"]
        acls += [KafkaAcl(user, "topic", topic, "literal", ("Write", "Describe"))
                 for topic in plan.topics_of(prefix, endpoint.id)]
        acls.append(KafkaAcl(user, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",)))
        # A change too large for a message is dead-lettered by the capture (connectors/capture/oversized.py).
        acls += [KafkaAcl(user, "topic", plan.dead_letter_topic(prefix, route.name), "literal", ("Write", "Describe"))
                 for route in plan.routes if route.source == endpoint.id]
    for route in plan.routes:
        user = users[f"worker-{route.name}"]
        acls += [KafkaAcl(user, "topic", plan.topic(prefix, endpoint, store), "literal", ("Read", "Describe"))
                 for endpoint, store in route.reads]
        acls.append(KafkaAcl(user, "topic", plan.dead_letter_topic(prefix, route.name), "literal",
                             ("Write", "Describe")))
        # The Faust app id is the group; Faust creates no internal topic here (leader topic
        # disabled, no tables, memory store: streams/apply/app.py).
        acls.append(KafkaAcl(user, "group", plan.consumer_group(prefix, route.name), "literal", ("Read",)))
        acls.append(KafkaAcl(user, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",)))  # dead letters
    for endpoint in (e for e in plan.endpoints if e.role != "replica"):
        user = users[f"mode-{endpoint.id}"]
        acls.append(KafkaAcl(user, "topic", plan.heartbeat_topic(prefix, endpoint.id), "literal",
                             ("Read", "Write", "Describe")))
        acls.append(KafkaAcl(user, "group", plan.mode_group(endpoint.id), "literal", ("Read",)))
    acls += _subscription_acls(plan, prefix, users)
    op = users["operator"]
    acls.append(KafkaAcl(op, "topic", f"{prefix}.", "prefixed", ("Read", "Describe")))
    # dlq retry re-drives a dead letter's original bytes to its source (capture) topic.
    acls += [KafkaAcl(op, "topic", topic, "literal", ("Write",))
             for e in plan.endpoints for topic in plan.topics_of(prefix, e.id)]
    # Each link's stack records re-driven letters in its own <link prefix>.dlq.retried.
    links = {plan.link_prefix(prefix, e.tenant) for e in plan.endpoints if e.tenant is not None}
    acls += [KafkaAcl(op, "topic", retried_topic(dataclasses.replace(settings, topic_prefix=link)), "literal",
                      ("Create", "Write")) for link in sorted(links)]
    # replay moves the route groups' offsets (and probes them with <group>-replay-probe).
    acls += [KafkaAcl(op, "group", plan.consumer_group(prefix, route.name), "prefixed", ("Read", "Describe"))
             for route in plan.routes]
    acls += [KafkaAcl(op, "group", group_prefix, "prefixed", ("Read",))
             for group_prefix in (f"{OPERATOR_CLIENT_ID}-", "platsync-report-", "platsync-incarnation-")]
    acls += [KafkaAcl(op, "topic", incarnation_topic(dataclasses.replace(settings, topic_prefix=link)), "literal",
                      ("Write",)) for link in sorted(links)]  # embedded stack only
    acls.append(KafkaAcl(op, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",)))  # re-capture
    return acls


def _subscription_acls(plan: NetworkPlan, prefix: str, users: dict[str, str]) -> list[KafkaAcl]:
    """The fan-out reads every home link's feeding store (both parties) and writes every feed; a subscriber
    reads its own feed only (docs/sharing.md)."""
    if not plan.subscription_processes():
        return []
    fanout = users["fanout"]
    feeding = [plan.topic(prefix, e.id, "fructos_own") for e in plan.endpoints if "fructos_own" in e.captured]
    acls = [KafkaAcl(fanout, "topic", t, "literal", ("Read", "Describe")) for t in feeding]
    acls += [KafkaAcl(fanout, "topic", plan.feed_topic(prefix, h.id), "literal", ("Write", "Describe"))
             for h in plan.topology.hospitals]
    acls += [KafkaAcl(fanout, "topic", plan.fanout_dead_letter_topic(prefix), "literal", ("Write", "Describe")),
             KafkaAcl(fanout, "group", f"{prefix}-fanout", "literal", ("Read",)),
             KafkaAcl(fanout, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",))]
    for hospital in plan.topology.hospitals:
        user = users[f"subscriber-{hospital.id}"]
        acls += [KafkaAcl(user, "topic", plan.feed_topic(prefix, hospital.id), "literal", ("Read", "Describe")),
                 KafkaAcl(user, "topic", plan.subscriber_dead_letter_topic(prefix, hospital.id), "literal",
                          ("Write", "Describe")),
                 KafkaAcl(user, "topic", plan.notification_topic(prefix, hospital.id), "literal",
                          ("Write", "Describe")),
                 KafkaAcl(user, "group", f"{plan.link_prefix(prefix, hospital.id)}-subscriber", "literal", ("Read",)),
                 KafkaAcl(user, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",))]
    return acls + _index_acls(plan, prefix, users)


def _index_acls(plan: NetworkPlan, prefix: str, users: dict[str, str]) -> list[KafkaAcl]:
    """Each common server's declarer writes its own index topic only; the indexer reads them all."""
    indexer = users["indexer"]
    acls = [KafkaAcl(indexer, "topic", plan.index_topic(prefix, n), "literal", ("Read", "Describe"))
            for n in plan.common_servers()]
    acls += [KafkaAcl(indexer, "topic", plan.indexer_dead_letter_topic(prefix), "literal", ("Write", "Describe")),
             KafkaAcl(indexer, "group", f"{prefix}-indexer", "literal", ("Read",)),
             KafkaAcl(indexer, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",))]
    for server in plan.common_servers():
        user = users[f"declarer-{server}"]
        acls += [KafkaAcl(user, "topic", plan.index_topic(prefix, server), "literal", ("Write", "Describe")),
                 KafkaAcl(user, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",))]
    return acls


def readable_topics(acls: list[KafkaAcl], principals: dict[str, str], known_topics: set[str]) -> dict[str, set[str]]:
    """Process -> the topics among ``known_topics`` its principal may Read (literal and prefixed rules)."""
    by_user = {user: process for process, user in principals.items()}
    readable: dict[str, set[str]] = {process: set() for process in principals}
    for acl in acls:
        if acl.resource_type != "topic" or "Read" not in acl.operations or acl.principal not in by_user:
            continue
        matched = {t for t in known_topics if (t == acl.name if acl.pattern == "literal" else t.startswith(acl.name))}
        readable[by_user[acl.principal]] |= matched
    return readable
