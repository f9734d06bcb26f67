"""Submits queued documents to the national sharing service and records each answer (docs/fhir.md).

A submission is one document content (``record_id``, ``content_hash``). Each attempt posts the bytes the
shared store holds for it with the request id ``<record_id>:<content_hash>``, so a repeated post (a crash
after the service answered, before the answer was recorded) gets the same receipt, never a second filing.
Answers: accepted (its receipt), refused (the service's reasons; final, an operator acts), or a transient
failure (retried with back-off, forever: the queue never drops a document). A document whose content changed
before it was sent is ``superseded`` (its new content is queued on its own); one withdrawn or deleted before
it was sent is ``withdrawn``: never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from connectors.fhir_service.client import SubmissionResult, backoff_s, submit_document
from connectors.stores.fhir_summary import SUBMISSIONS, fhir_metadata
from connectors.stores.tables import fructos_metadata

log = logging.getLogger("platsync.fhir")
#: Statuses still to be sent.
PENDING = ("queued", "retrying")
Post = Callable[[bytes, str], SubmissionResult]


def http_post(url: str, token: str | None, timeout_s: float) -> Post:
    """The post of the real client to the service at ``url`` (its FHIR base)."""
    return lambda body, request_id: submit_document(url, body, request_id=request_id, token=token,
                                                    timeout_s=timeout_s)


class Submitter:
    """Sends the due submissions of a shared store, one at a time, oldest first."""

    def __init__(self, engine: Engine, post: Post, batch: int = 20) -> None:
        self.engine, self.post, self.batch = engine, post, batch
        self.submissions = fhir_metadata().tables[SUBMISSIONS]
        self.records = fructos_metadata().tables["signed_records"]
        self.sent = 0

    def due(self) -> list[int]:
        """Ids of the submissions due now (queued, or retrying past their next attempt time)."""
        s = self.submissions
        with self.engine.begin() as conn:
            return [int(r.id) for r in conn.execute(
                select(s.c.id).where(s.c.status.in_(PENDING), s.c.next_attempt_at <= func.now())
                .order_by(s.c.next_attempt_at, s.c.id).limit(self.batch))]

    def run_once(self) -> int:
        """Attempt each due submission once; how many were attempted (sent or settled)."""
        ids = self.due()
        for submission_id in ids:
            self._attempt(submission_id)
        return len(ids)

    def _attempt(self, submission_id: int) -> None:
        s, r = self.submissions, self.records
        with self.engine.begin() as conn:  # one row at a time, locked: a second submitter skips it
            sub = conn.execute(select(s).where(s.c.id == submission_id, s.c.status.in_(PENDING))
                               .with_for_update(skip_locked=True)).one_or_none()
            if sub is None:
                return
            record = conn.execute(select(r.c.content, r.c.content_hash, r.c.deleted, r.c.approved, r.c.shared)
                                  .where(r.c.id == sub.record_id)).one_or_none()
            done = {"last_attempt_at": func.now()}
            if record is None or record.deleted or not record.approved or not record.shared:
                conn.execute(update(s).where(s.c.id == sub.id).values(
                    status="withdrawn", detail="withdrawn or deleted before it was sent: not submitted", **done))
                return
            if record.content_hash != sub.content_hash:
                conn.execute(update(s).where(s.c.id == sub.id).values(
                    status="superseded", detail="its content changed before it was sent: the new content is "
                    "submitted instead", **done))
                return
            result = self.post(bytes(record.content), f"{sub.record_id}:{sub.content_hash}")
            attempts = sub.attempts + 1
            if result.outcome == "accepted":
                values = {"status": "accepted", "receipt": result.receipt, "detail": result.detail}
                self.sent += 1
                log.info("submitted %s %s: receipt %s", sub.doc_type, sub.record_id, result.receipt)
            elif result.outcome == "refused":
                values = {"status": "refused", "detail": result.detail}
                log.warning("the sharing service refused %s %s: %s", sub.doc_type, sub.record_id, result.detail)
            else:
                wait = backoff_s(attempts)
                values = {"status": "retrying", "detail": result.detail,
                          "next_attempt_at": func.now() + timedelta(seconds=wait)}
                log.warning("submission of %s %s failed (attempt %d), retrying in %.0f s: %s", sub.doc_type,
                            sub.record_id, attempts, wait, result.detail)
            conn.execute(update(s).where(s.c.id == sub.id).values(attempts=attempts, **values, **done))
