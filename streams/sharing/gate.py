"""The share gate: what a store shared beyond its institution may hold of a document (pure).

The matrix says which APIs send a record to the cloud's shared patient store (患者管理FRUCtoS), and
the replica links copy that store to the regional servers. The share gate narrows it for documents
(``docs/sharing.md``): a document record whose ``shared`` flag is false is never written to a shared
store -- a write that would carry it becomes a withdrawal (a delete at its version, which also leaves
a tombstone there) -- and every later change of an approved document that is or was shared reaches
the shared stores whatever API made it, so they hold its current state (withdrawn when made private,
published again when made shared), as does the delete of a shared document not yet approved (withdrawn).
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.core.model import ChangeEvent, RowValue

#: The table of the signed records and the entity whose records have a share state.
RECORD_TABLE = "signed_records"
DOCUMENT_ENTITY = "document"


def is_document_record(table: str, row: Mapping[str, RowValue] | None) -> bool:
    """True for a signed record of a document (the only records with a share state)."""
    return table == RECORD_TABLE and row is not None and row.get("entity") == DOCUMENT_ENTITY


def is_shared(row: Mapping[str, RowValue]) -> bool:
    """A record's share state; a row without the column (captured before sharing existed) is shared."""
    return row.get("shared", True) is not False


def gated_op(change: ChangeEvent, op: str) -> str:
    """The op of a write of ``change`` into a shared store: an upsert of a private document withdraws it, and so
    does one of a document deleted before it was approved (its content was never shared: only its withdrawal,
    which must beat an approval the other party made during a cut, reaches the shared store)."""
    row = change.row
    if op == "upsert" and row is not None and is_document_record(change.table, row) \
            and (not is_shared(row) or (row.get("deleted") is True and not row.get("approved"))):
        return "delete"
    return op


def keeps_shared_copies_current(change: ChangeEvent) -> bool:
    """True if ``change`` must reach the shared stores whatever API made it (docs/sharing.md, rule 2):

    - a later change of an *approved* document that is or was shared (an update, a share change, a delete):
      so their copies stay current, a shared one copied, one made private withdrawn;
    - the delete of a shared document not approved on this side: during a cut the other party may have
      approved it, and a deleted state beats an approved one, so the copy that approval made is withdrawn.

    A document private before and after stays out (not even its id reaches a shared store); any other change
    of an unapproved document is in no shared store yet, and its approval (PRV_DOC_009) is routed by the
    matrix."""
    row, before = change.row, change.before
    if change.op != "u" or row is None or before is None or not is_document_record(change.table, row) \
            or not (is_shared(row) or is_shared(before)):
        return False
    if row.get("approved") and before.get("approved"):
        return True
    return row.get("deleted") is True and before.get("deleted") is not True


def is_share_gate_write(change: ChangeEvent) -> bool:
    """True if ``change``, captured in a shared store, may be the cloud's own publish or withdrawal of a
    document: a document record, or a delete (withdrawals are the only deletes of a shared store)."""
    return change.table == RECORD_TABLE and (change.op == "d" or is_document_record(change.table, change.row))
