"""The API matrix file: it equals the seed spec cell by cell, and every fault is reported exactly."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from streams.routing.matrix_model import (
    Matrix,
    MatrixError,
    MatrixFault,
    default_matrix_path,
    load_matrix,
)

SEEDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "seeds"

#: Seed column titles -> (side, store). Literal, so the test does not trust the renderer's labels.
SEED_COLUMNS: dict[str, tuple[str, str]] = {
    "ローカルMETA": ("local", "meta"),
    "ローカル自医療機関FRUCtoS": ("local", "fructos_own"),
    "ローカル医療機関FRUCtoS": ("local", "fructos_own"),  # the seed's remote→local spelling
    "ローカルKeycloak": ("local", "keycloak"),
    "リモートMETA": ("remote", "meta"),
    "リモート自医療機関FRUCtoS": ("remote", "fructos_own"),
    "リモート患者管理FRUCtoS": ("remote", "fructos_patient"),
    "リモートKeycloak": ("remote", "keycloak"),
}
SEED_HEADINGS = {"local_to_remote": "### ローカル→リモート連携", "remote_to_local": "### リモート→ローカル連携"}
STORE_CHOICES = "expected one of meta, fructos_own, fructos_patient, keycloak"


def seed_text() -> str:
    """The core spec seed, or skip when this checkout has no shared seeds next to it."""
    found = sorted(SEEDS_DIR.glob("000_*.txt"))
    if not found:
        pytest.skip(f"seed spec 000_*.txt not found in {SEEDS_DIR}; cannot compare the matrix to it")
    return found[0].read_text(encoding="utf-8")


def parse_seed_tables(text: str) -> dict[str, list[dict[str, Any]]]:
    """Each direction's rows: api_id, label, category (carried down), marks {(side, store): bool}."""
    lines = text.splitlines()
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, heading in SEED_HEADINGS.items():
        start = lines.index(heading) + 1
        while not lines[start].startswith("|"):
            start += 1
        body = []
        for line in lines[start:]:
            if not line.startswith("|"):
                break
            body.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        header, rows = body[0], body[2:]
        assert header[:2] == ["", "API名"]
        columns = [SEED_COLUMNS[title] for title in header[2:]]
        category = ""
        parsed = []
        for cells in rows:
            category = cells[0] or category
            marks = {col: cell == "○" for col, cell in zip(columns, cells[2:], strict=True)}
            assert all(cell in ("○", "") for cell in cells[2:])
            parsed.append({"api_id": cells[1][:11], "label": cells[1], "category": category, "marks": marks})
        tables[name] = parsed
    return tables


def test_packaged_matrix_equals_seed_tables_cell_by_cell() -> None:
    tables = parse_seed_tables(seed_text())
    matrix = load_matrix()
    for name, rows in tables.items():
        direction = matrix.direction(name)
        seed_routes = [r for r in direction.routes if r.from_seed]
        assert tuple(r.api_id for r in seed_routes) == tuple(row["api_id"] for row in rows)
        # Beside the seed's: the engine's own APIs only (the MHLW master, docs/master.md).
        assert [r.api_id for r in direction.routes if not r.from_seed] == ["PLAT_MST_001", "PLAT_MST_002"]
        for row, api in zip(rows, seed_routes, strict=True):
            assert (api.label, api.category) == (row["label"], row["category"])
            for (side, store), marked in row["marks"].items():
                stores = api.source if side == direction.source_side else api.target
                assert (store in stores) == marked, f"{name} {api.api_id} {side} {store}"
        assert len(rows) == 9


def test_default_path_is_the_packaged_file() -> None:
    assert default_matrix_path() == Path(__file__).resolve().parents[2] / "streams/routing/matrix.toml"
    assert load_matrix(default_matrix_path()) == load_matrix()


def test_feeds_and_direction_lookup() -> None:
    matrix = load_matrix()
    assert dict(matrix.feeds) == {
        "meta": "meta",
        "fructos_own": "fructos_own",
        "fructos_patient": "fructos_own",
        "keycloak": "keycloak",
    }
    assert matrix.direction_for_source("local").name == "local_to_remote"
    assert matrix.direction_for_source("remote").target_side == "local"
    assert matrix.direction("remote_to_local").get("PRV_USR_999") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        matrix.feeds = ()  # type: ignore[misc]


# --- validation ------------------------------------------------------------------------------


def base_doc() -> dict[str, Any]:
    """A small valid matrix document, mutated by each fault test."""
    both = {"meta": "meta", "fructos_own": "fructos_own", "fructos_patient": "fructos_own"}
    return {
        "feeds": {**both, "keycloak": "keycloak"},
        "apis": {
            "PRV_USR_001": {"category": "ユーザ管理", "label": "PRV_USR_001 user"},
            "PRV_STF_003": {"category": "スタッフ管理", "label": "PRV_STF_003 staff"},
        },
        "local_to_remote": {
            "PRV_USR_001": {"source": ["meta", "fructos_own"], "target": ["meta", "fructos_own", "fructos_patient"]},
            "PRV_STF_003": {"source": ["meta", "keycloak"], "target": ["meta", "keycloak"]},
        },
        "remote_to_local": {
            "PRV_USR_001": {"source": ["meta", "fructos_own", "fructos_patient"], "target": ["meta", "fructos_own"]},
            "PRV_STF_003": {"source": ["meta", "keycloak"], "target": ["meta", "keycloak"]},
        },
    }


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def to_toml(doc: dict[str, Any]) -> str:
    """Serialise a document: scalar top-level keys first, then one [table] per mapping."""
    lines = [f"{key} = {toml_value(value)}" for key, value in doc.items() if not isinstance(value, dict)]
    for key, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{key}]")
            lines.extend(f'"{k}" = {toml_value(v)}' for k, v in table.items())
    return "\n".join(lines) + "\n"


def faults_of(tmp_path: Path, doc: dict[str, Any] | str) -> tuple[str, list[tuple[str, str]]]:
    """Load ``doc`` from a temp file; return the file name and the (path, message) of each fault."""
    path = tmp_path / "matrix.toml"
    path.write_text(doc if isinstance(doc, str) else to_toml(doc), encoding="utf-8")
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    assert {fault.file for fault in info.value.faults} == {str(path)}
    return str(path), [(fault.path, fault.message) for fault in info.value.faults]


def test_base_doc_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(to_toml(base_doc()), encoding="utf-8")
    matrix = load_matrix(path)
    assert isinstance(matrix, Matrix)
    assert matrix.direction("local_to_remote").get("PRV_USR_001").target == (  # type: ignore[union-attr]
        "meta",
        "fructos_own",
        "fructos_patient",
    )


def test_toml_syntax_error_reports_line(tmp_path: Path) -> None:
    text = "[feeds]\nmeta = \n"
    with pytest.raises(tomllib.TOMLDecodeError) as toml_error:
        tomllib.loads(text)
    _, faults = faults_of(tmp_path, text)
    assert faults == [("line 2", f"invalid TOML: {toml_error.value}")]
    assert "(at line 2, column" in faults[0][1]


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(MatrixError) as info:
        load_matrix(missing)
    assert info.value.faults == [MatrixFault(str(missing), "", "cannot read file: No such file or directory")]


def test_missing_top_level_table(tmp_path: Path) -> None:
    doc = base_doc()
    del doc["remote_to_local"]
    assert faults_of(tmp_path, doc)[1] == [("remote_to_local", "missing required table")]


def test_extra_top_level_key(tmp_path: Path) -> None:
    doc = base_doc()
    doc["routes"] = {"x": 1}
    expected = "unknown top-level key; expected one of feeds, apis, local_to_remote, remote_to_local"
    assert faults_of(tmp_path, doc)[1] == [("routes", expected)]


def test_top_level_key_not_a_table(tmp_path: Path) -> None:
    doc = base_doc()
    doc["feeds"] = 3
    assert faults_of(tmp_path, doc)[1] == [("feeds", "expected a table, got int")]


def test_bad_api_id_format(tmp_path: Path) -> None:
    doc = base_doc()
    for table in ("apis", "local_to_remote", "remote_to_local"):
        doc[table] = {("PRV_usr_1" if k == "PRV_USR_001" else k): v for k, v in doc[table].items()}
    message = r"API id must match ^(PRV|PLAT)_[A-Z]{3}_\d{3}$, got 'PRV_usr_1'"
    assert faults_of(tmp_path, doc)[1] == [
        ("apis.PRV_usr_1", message),
        ("local_to_remote.PRV_usr_1", message),
        ("remote_to_local.PRV_usr_1", message),
    ]


@pytest.mark.parametrize("key", ["source", "target"])
def test_missing_source_or_target(tmp_path: Path, key: str) -> None:
    doc = base_doc()
    del doc["local_to_remote"]["PRV_STF_003"][key]
    assert faults_of(tmp_path, doc)[1] == [("local_to_remote.PRV_STF_003", f"missing {key!r} list")]


def test_source_not_a_list(tmp_path: Path) -> None:
    doc = base_doc()
    doc["remote_to_local"]["PRV_STF_003"]["source"] = "meta"
    assert faults_of(tmp_path, doc)[1] == [
        ("remote_to_local.PRV_STF_003.source", "expected a list of store names, got str 'meta'")
    ]


def test_entry_not_a_table_and_unknown_entry_key(tmp_path: Path) -> None:
    doc = base_doc()
    doc["local_to_remote"]["PRV_USR_001"] = ["meta"]
    doc["remote_to_local"]["PRV_STF_003"]["comment"] = "x"
    assert faults_of(tmp_path, doc)[1] == [
        ("local_to_remote.PRV_USR_001", "expected a table with source and target, got list"),
        ("remote_to_local.PRV_STF_003.comment", "unknown key; expected one of source, target"),
    ]


def test_unknown_store(tmp_path: Path) -> None:
    doc = base_doc()
    doc["local_to_remote"]["PRV_USR_001"]["target"][1] = "fructos_x"
    assert faults_of(tmp_path, doc)[1] == [
        ("local_to_remote.PRV_USR_001.target[1]", f"{STORE_CHOICES}, got 'fructos_x'")
    ]


def test_duplicate_store(tmp_path: Path) -> None:
    doc = base_doc()
    doc["remote_to_local"]["PRV_USR_001"]["source"].append("meta")
    assert faults_of(tmp_path, doc)[1] == [
        ("remote_to_local.PRV_USR_001.source[3]", "duplicate store 'meta' (already listed at source[0])")
    ]


def test_store_absent_on_that_side(tmp_path: Path) -> None:
    doc = base_doc()
    doc["local_to_remote"]["PRV_USR_001"]["source"].append("fructos_patient")
    doc["remote_to_local"]["PRV_USR_001"]["target"].append("fructos_patient")
    assert faults_of(tmp_path, doc)[1] == [
        (
            "local_to_remote.PRV_USR_001.source[2]",
            "store 'fructos_patient' does not exist on the local side (stores there: meta, fructos_own, keycloak)",
        ),
        (
            "remote_to_local.PRV_USR_001.target[2]",
            "store 'fructos_patient' does not exist on the local side (stores there: meta, fructos_own, keycloak)",
        ),
    ]


def test_empty_source(tmp_path: Path) -> None:
    doc = base_doc()
    doc["local_to_remote"]["PRV_STF_003"]["source"] = []
    assert faults_of(tmp_path, doc)[1] == [
        ("local_to_remote.PRV_STF_003.source", "must list at least one store the API writes "
         "(an API that does not exist on this side lists none in source and target)")
    ]


def test_an_api_absent_from_one_side_lists_no_store_there(tmp_path: Path) -> None:
    doc = base_doc()
    doc["remote_to_local"]["PRV_STF_003"] = {"source": [], "target": []}
    path = tmp_path / "matrix.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    route = load_matrix(path).direction("remote_to_local").get("PRV_STF_003")
    assert route is not None and (route.source, route.target) == ((), ())


def test_target_not_fed_by_any_source(tmp_path: Path) -> None:
    doc = base_doc()
    doc["local_to_remote"]["PRV_STF_003"]["target"].append("fructos_patient")
    assert faults_of(tmp_path, doc)[1] == [
        (
            "local_to_remote.PRV_STF_003.target[2]",
            "'fructos_patient' is fed by 'fructos_own' changes (see [feeds]), but PRV_STF_003 "
            "does not list 'fructos_own' in its source on the local side",
        )
    ]


def test_directions_list_different_apis(tmp_path: Path) -> None:
    doc = base_doc()
    del doc["remote_to_local"]["PRV_STF_003"]
    assert faults_of(tmp_path, doc)[1] == [
        (
            "remote_to_local",
            "missing PRV_STF_003, which local_to_remote lists (both directions must list the same APIs)",
        )
    ]


def test_apis_table_out_of_step_with_directions(tmp_path: Path) -> None:
    doc = base_doc()
    del doc["apis"]["PRV_STF_003"]
    doc["apis"]["PRV_ATH_001"] = {"category": "c", "label": "PRV_ATH_001 auth"}
    assert faults_of(tmp_path, doc)[1] == [
        ("apis", "missing PRV_STF_003, which local_to_remote and remote_to_local list"),
        ("apis.PRV_ATH_001", "not listed in local_to_remote, remote_to_local"),
    ]


def test_api_label_and_category_faults(tmp_path: Path) -> None:
    doc = base_doc()
    doc["apis"]["PRV_USR_001"] = {"label": "ユーザ情報", "note": "x"}
    doc["apis"]["PRV_STF_003"]["category"] = " "
    assert faults_of(tmp_path, doc)[1] == [
        ("apis.PRV_USR_001.note", "unknown key; expected one of category, label"),
        ("apis.PRV_USR_001", "missing 'category'"),
        ("apis.PRV_USR_001.label", "label must start with the API id 'PRV_USR_001', got 'ユーザ情報'"),
        ("apis.PRV_STF_003.category", "expected a non-empty string, got ' '"),
    ]


def test_feed_faults(tmp_path: Path) -> None:
    doc = base_doc()
    del doc["feeds"]["keycloak"]
    doc["feeds"]["fructos_patient"] = "fructos_x"
    doc["feeds"]["ldap"] = "meta"
    assert faults_of(tmp_path, doc)[1] == [
        ("feeds.fructos_patient", f"{STORE_CHOICES}, got 'fructos_x'"),
        ("feeds.ldap", f"unknown target store; {STORE_CHOICES}"),
        ("feeds", "missing feed for store 'keycloak'"),
    ]


def test_three_faults_reported_together(tmp_path: Path) -> None:
    doc = base_doc()
    doc["extra"] = {"a": 1}
    doc["local_to_remote"]["PRV_USR_001"]["target"][0] = "metta"
    doc["remote_to_local"]["PRV_STF_003"]["source"].append("keycloak")
    _, faults = faults_of(tmp_path, doc)
    assert len(faults) == 3
    assert faults == [
        ("extra", "unknown top-level key; expected one of feeds, apis, local_to_remote, remote_to_local"),
        ("local_to_remote.PRV_USR_001.target[0]", f"{STORE_CHOICES}, got 'metta'"),
        ("remote_to_local.PRV_STF_003.source[2]", "duplicate store 'keycloak' (already listed at source[1])"),
    ]


def test_error_text_one_line_per_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = default_matrix_path().read_text(encoding="utf-8")
    line = 'PRV_DOC_006 = { source = ["meta", "fructos_own"], target = ["meta", "fructos_own"] }'
    assert text.count(line) == 2
    bad = text.replace(line, line.replace('target = ["meta", "fructos_own"]', 'target = ["meta", "fructos_x"]'), 1)
    doc_007_end = '"fructos_own"] }\nPRV_DOC_008'
    assert bad.count(doc_007_end) == 2
    bad = bad.replace(doc_007_end, '"fructos_own", "fructos_own"] }\nPRV_DOC_008', 1)
    (tmp_path / "matrix.toml").write_text(bad, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MatrixError) as info:
        load_matrix(Path("matrix.toml"))
    assert str(info.value).splitlines() == [
        f"matrix.toml: local_to_remote.PRV_DOC_006.target[1]: {STORE_CHOICES}, got 'fructos_x'",
        "matrix.toml: local_to_remote.PRV_DOC_007.target[2]: duplicate store 'fructos_own' "
        "(already listed at target[1])",
    ]
    assert str(info.value.faults[0]) == str(info.value).splitlines()[0]


def test_empty_direction_table_is_caught(tmp_path: Path) -> None:
    doc = base_doc()
    doc["remote_to_local"] = {}
    suffix = "which local_to_remote lists (both directions must list the same APIs)"
    assert faults_of(tmp_path, doc)[1] == [
        ("remote_to_local", f"missing PRV_USR_001, {suffix}"),
        ("remote_to_local", f"missing PRV_STF_003, {suffix}"),
    ]


def test_malformed_api_info_is_reported_once(tmp_path: Path) -> None:
    doc = base_doc()
    doc["apis"]["PRV_USR_001"] = "user"
    assert faults_of(tmp_path, doc)[1] == [("apis.PRV_USR_001", "expected a table with category, label, got str")]
