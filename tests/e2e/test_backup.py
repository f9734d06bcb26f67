"""Backups of a node on the real stack (issue 18, docs/backups.md): taken with their positions, shipped to the
parent and checked there, listed, verified by a test restore, kept to the newest N, and a damaged copy found."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.runtime.connections import libpq_dsn
from tests.support.helpers import REPO, platsync

pytestmark = pytest.mark.e2e


def listed(stack: Stack, node: str) -> list[dict[str, object]]:
    out = platsync(stack.settings, "backup", "list", "--node", node, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_backup_is_shipped_listed_verified_by_a_test_restore_and_pruned(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    with ReferenceApi(s, "local") as api:
        api.call("PRV_DOC_006", {"patient_id": "p-backup-1", "doc_type": "note", "title": "backed up",
                                 "media_type": "text/plain", "content_text": "所見なし", "signed_by": "dr-backup"})
    with psycopg.connect(libpq_dsn(s, "local", "meta")) as conn:
        documents = conn.execute("SELECT count(*) FROM documents").fetchone()[0]

    made = platsync(s, "backup", "create", "--node", "local", timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "[3/3] keycloak" in made.stdout and "shipped to the parent" in made.stdout, made.stdout
    rows = listed(stack, "local")
    assert sorted(r["held_by"] for r in rows) == ["node", "parent"]
    assert all(r["databases"] == ["meta", "fructos_own", "keycloak"] for r in rows), rows
    manifest = json.loads((Path(str(rows[0]["path"])) / "manifest.json").read_text(encoding="utf-8"))
    meta = next(d for d in manifest["databases"] if d["store"] == "meta")
    assert meta["rows"]["documents"] == documents and "/" in meta["lsn"]
    with psycopg.connect(libpq_dsn(s, "local", "meta")) as conn:
        markers = conn.execute("SELECT max(txid) FROM platsync_txn_marker").fetchone()[0]
    assert manifest["xact_horizon"] > markers  # a restored server continues past every marker's id

    verified = platsync(s, "backup", "verify", "--node", "local", "--restore-test", timeout=300)
    assert verified.returncode == 0 and "test restore:" in verified.stdout, verified.stdout + verified.stderr
    assert platsync(s, "backup", "verify", "--node", "local", "--parent").returncode == 0

    # Retention: with 2 kept, a third backup removes the oldest here and at the parent.
    env = {**os.environ, "PYTHONPATH": str(REPO), "PLATSYNC_BACKUP_KEEP": "2"}
    for _ in range(2):
        time.sleep(1.1)  # backups are named by the second
        again = subprocess.run([sys.executable, "-m", "streams.cli.main", "backup", "create", "--node", "local",
                                "--data-dir", str(s.data_dir)], capture_output=True, text=True, env=env,
                               timeout=300, cwd="/")
        assert again.returncode == 0, again.stdout + again.stderr
    assert "retention (2): deleted" in again.stdout
    rows = listed(stack, "local")
    assert sorted(r["held_by"] for r in rows) == ["node", "node", "parent", "parent"], rows

    # A damaged copy at the parent is found, and named.
    copy = Path(str(next(r for r in rows if r["held_by"] == "parent")["path"]))
    dump = copy / "fructos_own.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    damaged = platsync(s, "backup", "verify", "--node", "local", "--parent", copy.name)
    assert damaged.returncode == 1 and "fructos_own.dump: sha256 differs" in damaged.stdout, damaged.stdout
    unknown = platsync(s, "backup", "verify", "--node", "local", "no-such-backup")
    assert unknown.returncode == 2 and "no such backup" in unknown.stderr
    status = platsync(s, "status")
    newest = max(str(r["name"]) for r in rows)
    assert re.search(rf"backups +local: \d+ s ago \({newest}\)", status.stdout), status.stdout
