"""``platsync backup create --name NODE_ID``: backups taken in a pod are named after the node (streams/cli/backup.py).

Inside a pod ``--node`` is the endpoint's side (``local``/``remote``); ``--name`` names the backup after the node
id the CronJob passes (infra/k8s/backup_job.py), and ``list``, ``verify`` and ``restore``'s choice of backup find
it under that name, here and at the parent. Without ``--name`` the names stay the node's (the embedded stack's).
The dump itself is replaced by a fake writing a manifest without databases: no PostgreSQL here.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import streams.ops.backup as backup_ops
from streams.cli.main import main
from streams.ops.backup_format import MANIFEST, Manifest, backup_name
from streams.ops.backup_restore import choose_backup
from streams.runtime.settings import Settings

START = datetime(2026, 12, 5, 17, 30, tzinfo=UTC)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``create_backup`` replaced: each call writes an empty backup a minute after the previous one; the
    (side, node) of every call."""
    calls: list[tuple[str, str]] = []
    minutes = itertools.count()

    def fake(settings: Settings, side: str, node: str, root: Path, say: Any = print) -> Path:
        calls.append((side, node))
        at = START + timedelta(minutes=next(minutes))
        path = root / node / backup_name(node, at)
        path.mkdir(parents=True)
        manifest = Manifest(node=node, side=side, created_at=at.isoformat(), server_version="15.10", databases=(),
                            duration_s=0.1)
        (path / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        return path

    monkeypatch.setattr(backup_ops, "create_backup", fake)
    return calls


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["backup", *args, "--data-dir", str(tmp_path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_pods_backup_carries_its_node_id_and_is_listed_verified_and_chosen_under_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], taken: list[tuple[str, str]]) -> None:
    code, out, _ = run(tmp_path, capsys, "create", "--node", "local", "--name", "hosp-a")
    assert code == 0 and taken == [("local", "hosp-a")]
    assert "backing up local (local side) as hosp-a into" in out
    name = backup_name("hosp-a", START)
    assert (tmp_path / "backups" / "hosp-a" / name).is_dir()
    assert (tmp_path / "parent-backups" / "hosp-a" / name / MANIFEST).is_file()  # shipped under the node's name
    assert not (tmp_path / "backups" / "local").exists()
    code, out, _ = run(tmp_path, capsys, "list", "--node", "hosp-a", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [(r["node"], r["held_by"], r["name"]) for r in rows] == [
        ("hosp-a", "node", name), ("hosp-a", "parent", name)]
    for where in ((), ("--parent",)):
        code, out, _ = run(tmp_path, capsys, "verify", "--name", "hosp-a", *where)
        assert code == 0 and out.startswith(f"{name}: verified")
        code, out, _ = run(tmp_path, capsys, "verify", "--node", "hosp-a", *where)
        assert code == 0 and out.startswith(f"{name}: verified")
    # restore's choice of backup at the parent (streams/cli/backup_restore.py) finds it by the node's name.
    assert choose_backup(tmp_path / "parent-backups", "hosp-a", None).name == name


def test_the_clouds_backup_of_a_hospitals_stores_is_named_after_that_endpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], taken: list[tuple[str, str]]) -> None:
    code, out, _ = run(tmp_path, capsys, "create", "--node", "remote", "--name", "remote.hosp-a", "--no-ship")
    assert code == 0 and taken == [("remote", "remote.hosp-a")]
    assert (tmp_path / "backups" / "remote.hosp-a" / backup_name("remote.hosp-a", START)).is_dir()
    assert not (tmp_path / "parent-backups").exists()


def test_retention_counts_the_named_nodes_backups(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  taken: list[tuple[str, str]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATSYNC_BACKUP_KEEP", "2")
    for _ in range(3):
        assert run(tmp_path, capsys, "create", "--node", "local", "--name", "hosp-a")[0] == 0
    kept = [backup_name("hosp-a", START + timedelta(minutes=m)) for m in (1, 2)]
    for root in ("backups", "parent-backups"):
        assert sorted(p.name for p in (tmp_path / root / "hosp-a").iterdir()) == kept


def test_without_name_the_backup_keeps_the_nodes_name(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      taken: list[tuple[str, str]]) -> None:
    code, out, _ = run(tmp_path, capsys, "create", "--no-ship")
    assert code == 0 and taken == [("local", "local")]
    assert "backing up local (local side) into" in out
    assert (tmp_path / "backups" / "local" / backup_name("local", START)).is_dir()
    code, _, _ = run(tmp_path, capsys, "create", "--node", "remote", "--name", "remote", "--no-ship")
    assert code == 0 and taken[-1] == ("remote", "remote")


@pytest.mark.parametrize(("name", "fault"), [
    ("remote", "remote is another node of this stack; back it up with --node remote"),
    ("Hosp_A", "cannot name backups after 'Hosp_A'"),
    ("hosp-a/..", "cannot name backups after 'hosp-a/..'"),
    ("x" * 64, "1-63 lower-case letters"),
])
def test_a_name_of_another_node_or_not_a_node_name_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], taken: list[tuple[str, str]], name: str,
        fault: str) -> None:
    code, _, err = run(tmp_path, capsys, "create", "--node", "local", "--name", name)
    assert code == 2 and fault in err and taken == []
