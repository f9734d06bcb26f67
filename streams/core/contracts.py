"""Contract evolution check: every version of every ``schemas/*.avsc`` must be able to read
data written with the version committed before it (Avro backward compatibility).

The check is behavioural: it generates records from the older schema, writes them with it,
and reads them back with the newer one through Avro schema resolution.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import fastavro
from fastavro.utils import generate_many


def backward_incompatibilities(old: dict, new: dict, samples: int = 200) -> list[str]:
    """Reasons why ``new`` cannot read data written with ``old`` (empty list: compatible)."""
    try:
        old_parsed = fastavro.parse_schema(old)
        new_parsed = fastavro.parse_schema(new)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a contract fault
        return [f"schema does not parse: {exc}"]
    problems: list[str] = []
    for record in generate_many(old_parsed, samples):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, old_parsed, record)
        buf.seek(0)
        try:
            fastavro.schemaless_reader(buf, old_parsed, new_parsed)
        except Exception as exc:  # noqa: BLE001 - resolution errors come in several types
            problems.append(f"{type(exc).__name__}: {exc}")
            break
    return problems


def committed_versions(repo: Path, rel_path: str) -> list[tuple[str, str]]:
    """``(commit, text)`` of each committed version of ``rel_path``, oldest first."""
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%H", "--follow", "--", rel_path],
                         capture_output=True, text=True, check=True)
    versions = []
    for commit in reversed(log.stdout.split()):
        shown = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{rel_path}"],
                               capture_output=True, text=True, check=False)
        if shown.returncode == 0:
            versions.append((commit, shown.stdout))
    return versions


def check_history(repo: Path, schema_dir: str = "schemas") -> list[str]:
    """Faults across the history of every contract, plus the working tree against its last commit."""
    faults: list[str] = []
    for path in sorted((repo / schema_dir).glob("*.avsc")):
        rel = f"{schema_dir}/{path.name}"
        versions = committed_versions(repo, rel) + [("working tree", path.read_text(encoding="utf-8"))]
        for (old_commit, old_text), (new_commit, new_text) in zip(versions, versions[1:], strict=False):
            if old_text == new_text:
                continue
            for problem in backward_incompatibilities(json.loads(old_text), json.loads(new_text)):
                faults.append(f"{rel}: {new_commit[:12]} cannot read data written by {old_commit[:12]}: {problem}")
    return faults
