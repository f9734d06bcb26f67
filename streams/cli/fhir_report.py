"""Printing ``platsync fhir summary`` and ``platsync fhir submissions`` (docs/fhir.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from streams.fhir.six import KINDS
from streams.ops.fhir_summary_report import read_submissions, read_summary, summary_bundle
from streams.runtime.settings import Settings


def print_summary(settings: Settings, patient: str, fmt: str, institution: str | None, output: Path | None) -> int:
    """Print a patient's summary (text, json) or write it as a FHIR Bundle; exit 1 if there is nothing to write."""
    summary = read_summary(settings, patient)
    if fmt == "json":
        print(json.dumps(summary.as_json(), ensure_ascii=False, indent=2))
        return 0
    if fmt == "fhir":
        try:
            data = summary_bundle(summary, institution)
        except LookupError as exc:
            print(f"platsync fhir summary: {exc}", file=sys.stderr)
            return 1
        if output:
            output.write_bytes(data)
            print(f"wrote the 6 information of patient {patient} ({len(summary.entries)} entries) to {output}",
                  file=sys.stderr)
        else:
            sys.stdout.buffer.write(data)
        return 0
    problems = [d for d in summary.documents if d["problem"]]
    print(f"patient {patient}: {len(summary.documents) - len(problems)} document(s) summarized, "
          f"{len(summary.entries)} entr{'y' if len(summary.entries) == 1 else 'ies'}")
    for kind, name in KINDS.items():
        entries = [e for e in summary.entries if e["kind"] == kind]
        print(f"{name} {kind} ({len(entries)})")
        for e in entries:
            value = f" {e['value']}" if e["value"] else ""
            status = f" [{e['status']}]" if e["status"] else ""
            print(f"  {e['date'] or '-':10} {e['code']} {e['display']}{value}{status}  "
                  f"(document {', '.join(e['records'])})")
    for d in summary.documents:
        print(f"document {d['record_id']}: {d['doc_type']} v{d['version']} from {d['institution_code']} "
              f"{d['institution_name']}" + (f": NOT SUMMARIZED: {d['problem']}" if d["problem"] else ""))
    if summary.waiting:
        print(f"({summary.waiting} changed document(s) still waiting for the FHIR worker)")
    return 0


def print_submissions(settings: Settings, status: str | None, patient: str | None, fmt: str, limit: int) -> int:
    """Print the submissions (latest ``limit``, filtered) and the count per status."""
    rows, counts = read_submissions(settings, status, patient, limit)
    if fmt == "json":
        print(json.dumps({"counts": counts, "submissions": [r.as_json() for r in rows]}, ensure_ascii=False,
                         indent=2))
        return 0
    for r in rows:
        what = {"accepted": f"receipt {r.receipt}", "retrying": f"attempt {r.attempts}, next {r.next_attempt_at}: "
                f"{r.detail}", "queued": "waiting for its first attempt"}.get(r.status, r.detail or "")
        print(f"{r.id:6} {r.status:10} {r.doc_type:9} {r.record_id} v{r.version} patient {r.patient_id}: {what}")
    total = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
    print(f"submissions: {total}")
    return 0
