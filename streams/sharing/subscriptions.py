"""Patient subscriptions: which hospitals receive a copy of a shared document (pure; docs/sharing.md).

A hospital subscribes to PLAT patients; a subscribed patient's shared documents from every other
institution are copied onto it, read-only and marked with their source institution, so that it
has them while it is offline. What a subscriber may receive is exactly what the cloud's shared
patient store holds (the replica router and its share gate decide that), narrowed to documents of
the patients it subscribed to and never sent back to the document's own institution.

This module decides; the fan-out process that applies it (and the snapshot on subscribe and the
removal on unsubscribe) is built on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streams.core.model import REPLICA_STORE, ChangeEvent, RowValue, Write
from streams.routing.matrix_model import Matrix
from streams.routing.replica import route_replica
from streams.sharing.gate import RECORD_TABLE, is_document_record

#: The store a subscriber keeps its subscribed copies in (read-only there).
SUBSCRIBED_STORE = "fructos_subscribed"
#: The column of a subscribed copy naming the institution (home node) the document comes from.
SOURCE_COLUMN = "source_node"
#: The API ids the copies made by a (un)subscription carry: no PLAT API made them.
SUBSCRIBE_API, UNSUBSCRIBE_API = "PLATSYNC_SUBSCRIBE", "PLATSYNC_UNSUBSCRIBE"


@dataclass(frozen=True)
class SubscriptionDecision:
    """The writes one change requires on each subscriber (by node), or why none."""

    writes: Mapping[str, tuple[Write, ...]] = dataclasses.field(default_factory=dict)
    skipped: str | None = None


def route_subscribed(change: ChangeEvent, matrix: Matrix, home: str,
                     subscribers: Mapping[str, Iterable[str]]) -> SubscriptionDecision:
    """The copies a change captured on ``home``'s link (either party) requires on the subscribers.

    ``subscribers`` maps a PLAT patient id to the nodes subscribed to it. Rules, in order: what does
    not reach the shared store is not copied (the replica router's reason) -> a record that is not a
    document is not copied -> a document without a patient id is not copied -> no subscriber but the
    home institution -> one write per subscriber, the shared store's write (an upsert, or a
    withdrawal of a document made private) marked with its source institution.
    """
    decision = route_replica(change, matrix, REPLICA_STORE)
    if not decision.writes:
        return SubscriptionDecision(skipped=decision.skipped)
    image = change.row if change.row is not None else change.before
    if not is_document_record(change.table, image):
        return SubscriptionDecision(skipped="not a document: subscriptions copy documents only")
    assert image is not None
    patient = image.get("patient_id")
    if not isinstance(patient, str) or not patient:
        return SubscriptionDecision(skipped="the record names no patient (written before subscriptions existed)")
    nodes = sorted(n for n in subscribers.get(patient, ()) if n != home)
    if not nodes:
        return SubscriptionDecision(skipped=f"no other institution subscribes to patient {patient}")
    (shared,) = decision.writes
    return SubscriptionDecision(writes={node: (_copy(shared, node, home),) for node in nodes})


def _copy(write: Write, node: str, home: str) -> Write:
    row = None if write.row is None else {**write.row, SOURCE_COLUMN: home}
    return dataclasses.replace(write, target_side=node, target_store=SUBSCRIBED_STORE, row=row)


def subscribe_writes(node: str, held: Iterable[tuple[str, Mapping[str, RowValue]]]) -> tuple[Write, ...]:
    """What a new subscription copies at once: the shared store's records of the patient, each with its home
    node (``held``: (home, row) pairs read from the shared store), except the subscriber's own."""
    return tuple(
        Write(target_side=node, target_store=SUBSCRIBED_STORE, table=RECORD_TABLE, op="upsert", key=str(row["id"]),
              version=_version(row), row={**row, SOURCE_COLUMN: home}, event_id=f"subscribe:{row['id']}",
              api_id=SUBSCRIBE_API, origin_side=home)
        for home, row in held if home != node and is_document_record(RECORD_TABLE, row))


def unsubscribe_writes(node: str, copies: Iterable[Mapping[str, RowValue]]) -> tuple[Write, ...]:
    """What an unsubscription removes: every copy the subscriber holds of the patient, at its version."""
    return tuple(
        Write(target_side=node, target_store=SUBSCRIBED_STORE, table=RECORD_TABLE, op="delete", key=str(row["id"]),
              version=_version(row), row=None, event_id=f"unsubscribe:{row['id']}", api_id=UNSUBSCRIBE_API,
              origin_side=str(row[SOURCE_COLUMN]))
        for row in copies)


def _version(row: Mapping[str, RowValue]) -> int:
    version = row["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"signed record {row.get('id')!r}: version {version!r} is not an integer")
    return version
