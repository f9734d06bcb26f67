"""The network topology: shipped files, derived links, every fault reported exactly, the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.stores.serials import DOCUMENT_NUMBER_RANGES, PATIENT_NUMBER_RANGES
from streams.cli.main import main
from streams.routing.matrix_model import Matrix, load_matrix
from streams.topology.load import TopologyError, TopologyFault, default_topology, load_topology
from streams.topology.model import NumberRange, Topology
from streams.topology.render import topology_to_json, topology_to_text

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"
MATRIX = load_matrix()
HOME_DIRECTIONS = ("local_to_remote", "remote_to_local")
#: What the regional server's fructos_patient receives, read off today's matrix by hand.
REPLICATED_TODAY = ("PRV_USR_001", "PRV_DOC_009")
COMMONS = "expected a common node: remote, region-1"


# --- helpers -------------------------------------------------------------------------------------

def block(k: int) -> dict[str, list[int]]:
    """Block ``k`` of the documented scheme: 10,000,000 patient / 100,000,000 document numbers."""
    return {
        "patient_numbers": [max(k * 10**7, 1), (k + 1) * 10**7 - 1],
        "document_numbers": [max(k * 10**8, 1), (k + 1) * 10**8 - 1],
    }


def node(node_id: Any, kind: Any, parent: Any = None, k: int | None = None, **extra: Any) -> dict[str, Any]:
    """One ``[[nodes]]`` table; ranges of block ``k`` unless ``k`` is None; ``None`` values are left out."""
    table = {"id": node_id, "kind": kind, "parent": parent, **(block(k) if k is not None else {}), **extra}
    return {key: value for key, value in table.items() if value is not None}


def toml(nodes: list[dict[str, Any]], head: str = "") -> str:
    """The TOML text of a topology (JSON scalars and arrays are valid TOML values)."""
    parts = [head] if head else []
    for table in nodes:
        parts.append("[[nodes]]\n" + "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in table.items()))
    return "\n".join(parts)


def write(tmp_path: Path, text: str, name: str = "topology.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def faults_of(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert all(f.file == str(path) for f in caught.value.faults)
    return [(f.path, f.message) for f in caught.value.faults]


#: A valid network with a regional server: remote > region-1 > hosp-a, remote > hosp-b.
ROOT = node("remote", "common", patient_numbers=[500000000, 999999999], document_numbers=[5000000000, 9999999999])
REGION = node("region-1", "common", "remote", 2)
HOSP_A = node("hosp-a", "hospital", "region-1", 0)
HOSP_B = node("hosp-b", "hospital", "remote", 1)
NETWORK = [ROOT, REGION, HOSP_A, HOSP_B]


def with_node(index: int, **changes: Any) -> list[dict[str, Any]]:
    """NETWORK with node ``index`` changed (a ``None`` value removes the key)."""
    nodes = [dict(n) for n in NETWORK]
    nodes[index].update(changes)
    nodes[index] = {k: v for k, v in nodes[index].items() if v is not None}
    return nodes


# --- the shipped files ---------------------------------------------------------------------------

SHIPPED = {
    "default.toml": [("remote", "common", None), ("local", "hospital", "remote")],
    "two_hospitals.toml": [("remote", "common", None), ("hosp-a", "hospital", "remote"),
                           ("hosp-b", "hospital", "remote")],
    "regional.toml": [("remote", "common", None), ("region-1", "common", "remote"),
                      ("hosp-a", "hospital", "region-1"), ("hosp-b", "hospital", "region-1")],
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_topology_loads(name: str) -> None:
    topology = load_topology(TOPOLOGIES / name)
    assert [(n.id, n.kind, n.parent) for n in topology.nodes] == SHIPPED[name]
    assert topology.root.id == "remote" and topology.path == str(TOPOLOGIES / name)
    assert topology.is_default == (name == "default.toml")
    ranges = [(n.patient_numbers, n.document_numbers) for n in topology.nodes]
    for i, (patient, document) in enumerate(ranges):
        for other_patient, other_document in ranges[i + 1:]:
            assert not patient.overlaps(other_patient) and not document.overlaps(other_document)


def test_default_file_equals_default_topology_and_todays_serial_ranges() -> None:
    built = default_topology()
    assert load_topology(TOPOLOGIES / "default.toml") == built
    assert built.is_default and built.path == ""
    for side in ("local", "remote"):
        assert built.node(side).patient_numbers == NumberRange(*PATIENT_NUMBER_RANGES[side])
        assert built.node(side).document_numbers == NumberRange(*DOCUMENT_NUMBER_RANGES[side])


def test_default_topology_may_leave_its_ranges_out(tmp_path: Path) -> None:
    path = write(tmp_path, toml([node("remote", "common"), node("local", "hospital", "remote")]))
    assert load_topology(path) == default_topology()


def test_is_default_is_the_exact_shape_and_ranges() -> None:
    base = default_topology()
    assert base.is_default
    local, remote = base.node("local"), base.node("remote")
    moved = Topology((remote, dataclasses.replace(local, patient_numbers=NumberRange(1, 9))))
    renamed = Topology((remote, dataclasses.replace(local, id="hosp-a")))
    coded = Topology((remote, dataclasses.replace(local, institution="1311234567")))
    assert not moved.is_default and not renamed.is_default
    assert coded.is_default  # an institution code is information, not shape


def test_helpers_navigate_the_tree() -> None:
    topology = load_topology(TOPOLOGIES / "regional.toml")
    assert [n.id for n in topology.hospitals] == ["hosp-a", "hosp-b"]
    assert [n.id for n in topology.children("region-1")] == ["hosp-a", "hosp-b"]
    assert [n.id for n in topology.children("hosp-a")] == []
    assert [n.id for n in topology.ancestors("hosp-b")] == ["region-1", "remote"]
    assert [(d, n.id) for d, n in topology.walk()] == [(0, "remote"), (1, "region-1"), (2, "hosp-a"), (2, "hosp-b")]
    assert topology.node("hosp-a").institution == "1311234567"
    with pytest.raises(KeyError):
        topology.node("nowhere")


# --- links ---------------------------------------------------------------------------------------

LINKS = {
    "default.toml": [("home.local", "home", "remote", "local")],
    "two_hospitals.toml": [("home.hosp-a", "home", "remote", "hosp-a"), ("home.hosp-b", "home", "remote", "hosp-b")],
    "regional.toml": [
        ("home.hosp-a", "home", "remote", "hosp-a"),
        ("replica.hosp-a.region-1", "replica", "region-1", "hosp-a"),
        ("home.hosp-b", "home", "remote", "hosp-b"),
        ("replica.hosp-b.region-1", "replica", "region-1", "hosp-b"),
    ],
}


def check_home_link(link: Any, matrix: Matrix) -> None:
    """Both matrix directions, every API, the hospital in the local role and the root in the remote role."""
    assert not link.one_way and link.directions == HOME_DIRECTIONS and link.upper == "remote"
    expected = [
        (d.name, r.api_id, link.lower if d.source_side == "local" else "remote", r.source,
         "remote" if d.source_side == "local" else link.lower, r.target)
        for d in matrix.directions for r in d.routes if r.source
    ]
    got = [(r.direction, r.api_id, r.source_node, r.source, r.target_node, r.target) for r in link.routes]
    # The seed's 9 APIs both ways; the master's 2 (PLAT_MST_*) from the hospital only.
    assert got == expected and len(got) == 20
    assert [r.api_id for r in link.routes if r.direction == "remote_to_local" and r.api_id.startswith("PLAT_")] == []


@pytest.mark.parametrize("name", sorted(LINKS))
def test_links_of_each_example(name: str) -> None:
    links = load_topology(TOPOLOGIES / name).links(MATRIX)
    assert [(k.name, k.kind, k.upper, k.lower) for k in links] == LINKS[name]
    for link in links:
        if link.kind == "home":
            check_home_link(link, MATRIX)
        else:
            # One way into the regional server, from both parties of the home link: what the cloud's shared
            # store receives from the hospital, and what the cloud writes into it itself.
            assert link.one_way and link.directions == ("local_to_remote", "remote_to_local")
            assert [r.api_id for r in link.routes] == [*REPLICATED_TODAY, *REPLICATED_TODAY]
            for r in link.routes:
                source = link.lower if r.direction == "local_to_remote" else "remote"
                assert (r.source_node, r.target_node, r.target) == (source, link.upper, ("fructos_patient",))
                assert r.source == MATRIX.direction(r.direction).get(r.api_id).source  # type: ignore[union-attr]


def test_replica_routes_are_derived_from_the_matrix(tmp_path: Path) -> None:
    text = (Path(MATRIX.path).read_text(encoding="utf-8")
            .replace('PRV_PAT_001 = { source = ["meta", "fructos_own"], target = ["meta", "fructos_own"] }',
                     'PRV_PAT_001 = { source = ["meta", "fructos_own"], target = ["meta", "fructos_own", '
                     '"fructos_patient"] }', 1))
    matrix = load_matrix(write(tmp_path, text, "matrix.toml"))
    replica = load_topology(TOPOLOGIES / "regional.toml").links(matrix)[1]
    assert replica.kind == "replica"
    assert [(r.direction, r.api_id) for r in replica.routes] == [
        ("local_to_remote", "PRV_USR_001"), ("local_to_remote", "PRV_PAT_001"), ("local_to_remote", "PRV_DOC_009"),
        ("remote_to_local", "PRV_USR_001"), ("remote_to_local", "PRV_DOC_009")]


def test_deeper_tree_replicates_to_every_regional_server_and_homes_at_the_root(tmp_path: Path) -> None:
    nodes = [ROOT, node("area", "common", "remote", 3), node("region-1", "common", "area", 2),
             node("hosp-a", "hospital", "region-1", 0), node("hosp-b", "hospital", "area", 1)]
    links = load_topology(write(tmp_path, toml(nodes))).links(MATRIX)
    assert [(k.name, k.upper) for k in links] == [
        ("home.hosp-a", "remote"), ("replica.hosp-a.region-1", "region-1"), ("replica.hosp-a.area", "area"),
        ("home.hosp-b", "remote"), ("replica.hosp-b.area", "area"),
    ]


# --- faults: one case per fault kind -------------------------------------------------------------

ID_RULE = ("expected lowercase letters, digits, '-' or '_', starting with a letter, at most 32 characters "
           "(^[a-z][a-z0-9_-]{0,31}$; the id becomes part of Kafka topic names and database names), got ")
INSTITUTION = ("expected a 10-digit 医療機関コード as a string: 2-digit prefecture 01-47, 点数表 code 1 (医科), "
               "3 (歯科) or 4 (薬局), 7-digit number, got ")
PATIENT_RANGE = "expected [lo, hi]: two integers with 1 <= lo <= hi <= 999999999 (9-digit patient numbers), got "
DOCUMENT_RANGE = ("expected [lo, hi]: two integers with 1 <= lo <= hi <= 9999999999 (10-digit document numbers), "
                  "got ")
NO_HOSPITAL_BELOW = ("common node 'region-1' has no hospital below it: a regional server only receives its "
                     "hospitals' replicas (add hospitals under it or remove it)")
MISSING_RANGE = ("missing {!r}: outside the default topology (hospital 'local' under the cloud 'remote') every "
                 "node declares its ranges, [lo, hi] with 1 <= lo <= hi <= {}")

FAULT_CASES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "unknown top-level key": (toml(NETWORK, head='version = 2\n'),
                              [("version", "unknown top-level key; expected one of nodes")]),
    "no nodes": ('title = "x"\n', [("title", "unknown top-level key; expected one of nodes"),
                                   ("nodes", "expected an array of tables [[nodes]], got nothing")]),
    "nodes is a table": ('[nodes]\nid = "remote"\n', [("nodes", "expected an array of tables [[nodes]], got dict")]),
    "unknown node key": (toml(with_node(2, role="local")), [(
        "nodes[2].role",
        "unknown key; expected one of id, kind, parent, institution, patient_numbers, document_numbers")]),
    "missing id and kind": (toml(with_node(3, id=None, kind=None)), [
        ("nodes[3]", "missing 'id'"), ("nodes[3]", "missing 'kind'")]),
    "id uppercase": (toml(with_node(3, id="Hosp-B")), [("nodes[3].id", ID_RULE + "'Hosp-B'")]),
    "id starts with a digit": (toml(with_node(3, id="1hosp")), [("nodes[3].id", ID_RULE + "'1hosp'")]),
    "id too long": (toml(with_node(3, id="h" * 33)), [("nodes[3].id", ID_RULE + repr("h" * 33))]),
    "id not a string": (toml(with_node(3, id=7)), [("nodes[3].id", ID_RULE + "7")]),
    "duplicate id": (toml(with_node(3, id="hosp-a")), [
        ("nodes[3].id", "duplicate node id 'hosp-a' (already used by nodes[2])")]),
    "unknown kind": (toml(with_node(3, kind="clinic")), [
        ("nodes[3].kind", "expected one of hospital, common, got 'clinic'")]),
    "unknown parent": (toml(with_node(3, parent="region-9")), [
        ("nodes[3].parent", "unknown node 'region-9'; expected the id of a common node: remote, region-1")]),
    "parent not a string": (toml(with_node(3, parent=["remote"])), [
        ("nodes[3].parent", "expected the id of a common node (a string), got ['remote']")]),
    "hospital parent": (toml(with_node(3, parent="hosp-a")), [
        ("nodes[3].parent", f"'hosp-a' (nodes[2]) is a hospital; hospitals cannot have children, {COMMONS}")]),
    "hospital as root": (toml(with_node(3, parent=None)), [
        ("nodes[3]", "missing 'parent': a hospital cannot be the root (the node without parent is the cloud, "
                     "kind \"common\"); give it its common node as parent")]),
    "two roots": (toml(with_node(1, parent=None)), [
        ("nodes", "exactly one node may have no parent (the root: the cloud), found 2: "
                  "nodes[0] ('remote'), nodes[1] ('region-1')")]),
    "no root": (toml(with_node(0, parent="region-1")), [
        ("nodes", "no root: exactly one node, the cloud (kind \"common\"), must have no parent"),
        ("nodes[0].parent", "cycle: remote -> region-1 -> remote (a node cannot be its own ancestor)")]),
    "own parent": (toml(with_node(1, parent="region-1")), [
        ("nodes[1].parent", "cycle: region-1 -> region-1 (a node cannot be its own ancestor)")]),
    "cycle below the root": (toml([*with_node(1, parent="area"), node("area", "common", "region-1", 3)]), [
        ("nodes[1].parent", "cycle: region-1 -> area -> region-1 (a node cannot be its own ancestor)")]),
    "common node without hospital": (toml(with_node(2, parent="remote")), [("nodes[1]", NO_HOSPITAL_BELOW)]),
    "no hospital": (toml([ROOT]), [
        ("nodes", "no hospital: a topology needs at least one node with kind = \"hospital\"")]),
    "institution: prefecture": (toml(with_node(2, institution="4811234567")), [
        ("nodes[2].institution", INSTITUTION + "'4811234567' (prefecture code 48 is not 01-47)")]),
    "institution: prefecture 00": (toml(with_node(2, institution="0011234567")), [
        ("nodes[2].institution", INSTITUTION + "'0011234567' (prefecture code 00 is not 01-47)")]),
    "institution: 点数表 code": (toml(with_node(2, institution="1321234567")), [
        ("nodes[2].institution", INSTITUTION + "'1321234567' (点数表 code 2 is not 1, 3 or 4)")]),
    "institution: nine digits": (toml(with_node(2, institution="131123456")), [
        ("nodes[2].institution", INSTITUTION + "'131123456'")]),
    "institution: full-width digits": (toml(with_node(2, institution="１３１１２３４５６７")), [
        ("nodes[2].institution", INSTITUTION + "'１３１１２３４５６７'")]),
    "institution: integer": (toml(with_node(2, institution=1311234567)), [
        ("nodes[2].institution", INSTITUTION + "1311234567 (an integer: quote it, or a leading zero is lost)")]),
    "institution on a common node": (toml(with_node(1, institution="1311234567")), [
        ("nodes[1].institution", "only hospital nodes have an institution code (the cloud and regional servers "
                                 "hold records of many institutions)")]),
    "institution twice": (toml([*with_node(2, institution="1311234567")[:3],
                                {**HOSP_B, "institution": "1311234567"}]), [
        ("nodes[3].institution", "institution 1311234567 already belongs to nodes[2] ('hosp-a'); "
                                 "an institution has one home node")]),
    "range: lo > hi": (toml(with_node(2, patient_numbers=[9, 1])), [
        ("nodes[2].patient_numbers", PATIENT_RANGE + "[9, 1]")]),
    "range: zero": (toml(with_node(2, patient_numbers=[0, 9])), [
        ("nodes[2].patient_numbers", PATIENT_RANGE + "[0, 9]")]),
    "range: too wide": (toml(with_node(2, document_numbers=[1, 10**10])), [
        ("nodes[2].document_numbers", DOCUMENT_RANGE + "[1, 10000000000]")]),
    "range: not a pair": (toml(with_node(2, patient_numbers=[1, 2, 3])), [
        ("nodes[2].patient_numbers", PATIENT_RANGE + "[1, 2, 3]")]),
    "range: booleans": (toml(with_node(2, patient_numbers=[True, True])), [
        ("nodes[2].patient_numbers", PATIENT_RANGE + "[True, True]")]),
    "range: missing": (toml(with_node(3, patient_numbers=None, document_numbers=None)), [
        ("nodes[3]", MISSING_RANGE.format("patient_numbers", 999999999)),
        ("nodes[3]", MISSING_RANGE.format("document_numbers", 9999999999))]),
    "range: overlap": (toml(with_node(3, patient_numbers=[9999999, 10000000])), [
        ("nodes[3].patient_numbers", "[9999999, 10000000] overlaps the patient_numbers [1, 9999999] of nodes[2] "
                                     "('hosp-a'): the ranges of 'hosp-a' and 'hosp-b' must be disjoint, or both "
                                     "draw the same numbers")]),
    "range: overlap with a default": (toml([node("remote", "common"), node("local", "hospital", "remote",
                                                                           patient_numbers=[1, 500000000])]), [
        ("nodes[1].patient_numbers", "[1, 500000000] overlaps the default patient_numbers [500000000, 999999999] "
                                     "of nodes[0] ('remote'): the ranges of 'remote' and 'local' must be disjoint, "
                                     "or both draw the same numbers")]),
}


@pytest.mark.parametrize("case", sorted(FAULT_CASES))
def test_each_fault_is_reported_exactly(case: str, tmp_path: Path) -> None:
    text, expected = FAULT_CASES[case]
    assert faults_of(write(tmp_path, text)) == expected


def test_every_fault_of_a_file_is_listed(tmp_path: Path) -> None:
    nodes = [ROOT, node("Region", "common", "remote", 2), node("hosp-a", "clinic", "remote", 0),
             node("hosp-b", "hospital", "hosp-a", 1, institution="4811234567", colour="red"),
             node("hosp-c", "hospital", "remote", patient_numbers=[1, 5])]
    path = write(tmp_path, toml(nodes))
    assert faults_of(path) == [
        ("nodes[1].id", ID_RULE + "'Region'"),
        ("nodes[2].kind", "expected one of hospital, common, got 'clinic'"),
        ("nodes[3].colour", "unknown key; expected one of id, kind, parent, institution, patient_numbers, "
                            "document_numbers"),
        ("nodes[3].institution", INSTITUTION + "'4811234567' (prefecture code 48 is not 01-47)"),
        ("nodes[4]", MISSING_RANGE.format("document_numbers", 9999999999)),
        ("nodes[4].patient_numbers", "[1, 5] overlaps the patient_numbers [1, 9999999] of nodes[2] ('hosp-a'): "
                                     "the ranges of 'hosp-a' and 'hosp-c' must be disjoint, or both draw the same "
                                     "numbers"),
    ]
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert str(caught.value).splitlines()[0] == f"{path}: nodes[1].id: {ID_RULE}'Region'"


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[[nodes]]\nid = "remote"\nkind = common\n')
    [(where, message)] = faults_of(path)
    assert where == "line 3, column 8"
    assert message.startswith("invalid TOML: ") and "(at line 3, column 8)" in message


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    assert faults_of(tmp_path / "absent.toml") == [("", "cannot read file: No such file or directory")]
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'# \xe9\n[[nodes]]\n')
    assert faults_of(bad) == [("", "not UTF-8 text: invalid continuation byte")]
    assert str(TopologyFault("f.toml", "", "x")) == "f.toml: x"


# --- rendering and the CLI -----------------------------------------------------------------------

def test_json_rendering_lists_nodes_and_links_with_routes() -> None:
    data = topology_to_json(load_topology(TOPOLOGIES / "regional.toml"), MATRIX)
    assert data["root"] == "remote" and data["default"] is False
    assert [n["id"] for n in data["nodes"]] == ["remote", "region-1", "hosp-a", "hosp-b"]
    assert data["nodes"][1]["children"] == ["hosp-a", "hosp-b"]
    assert data["nodes"][2]["patient_numbers"] == [1, 9999999]
    replica = data["links"][1]
    assert replica["name"] == "replica.hosp-a.region-1" and replica["one_way"] is True
    assert replica["routes"][0] == {"direction": "local_to_remote", "api_id": "PRV_USR_001",
                                    "source_node": "hosp-a", "source": ["meta", "fructos_own"],
                                    "target_node": "region-1", "target": ["fructos_patient"]}


def test_text_rendering_draws_the_tree_and_the_routes() -> None:
    text = topology_to_text(load_topology(TOPOLOGIES / "regional.toml"), MATRIX)
    lines = text.splitlines()
    assert lines[3:7] == [
        "nodes (4: 2 hospitals, 2 common):",
        "remote (common, root: the cloud)  patient numbers [500000000, 999999999], "
        "document numbers [5000000000, 9999999999]",
        "└─ region-1 (common, regional server)  patient numbers [20000000, 29999999], "
        "document numbers [200000000, 299999999]",
        "   ├─ hosp-a (hospital, institution 1311234567)  patient numbers [1, 9999999], "
        "document numbers [1, 99999999]",
    ]
    start = lines.index("replica.hosp-a.region-1: hosp-a -> region-1  (replica link, one way: read-only copies)")
    assert lines[start + 1:start + 4] == ["  hosp-a -> region-1 (matrix local_to_remote):",
                                          "    PRV_USR_001: meta, fructos_own -> fructos_patient",
                                          "    PRV_DOC_009: meta, fructos_own -> fructos_patient"]
    assert "    PRV_DOC_009: meta, fructos_own -> meta, fructos_own, fructos_patient" in lines


def test_cli_shows_the_built_in_default_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "show"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("topology: built-in default  (the default: hospital 'local' under the cloud 'remote')\n")
    assert "└─ local (hospital)  patient numbers [1, 499999999], document numbers [1, 4999999999]" in out
    assert "home.local: local <-> remote  (home link, both ways, direct to the cloud root)" in out
    assert "replica." not in out


def test_cli_shows_a_file_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = TOPOLOGIES / "regional.toml"
    assert main(["topology", "show", "--topology", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"] == str(path)
    assert [link["name"] for link in data["links"]] == [name for name, *_ in LINKS["regional.toml"]]


def test_cli_rejects_an_invalid_file_with_every_fault(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, toml(with_node(3, kind="clinic", parent="nowhere")))
    assert main(["topology", "show", "--topology", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "invalid topology (2 fault(s)):",
        f"{path}: nodes[3].kind: expected one of hospital, common, got 'clinic'",
        f"{path}: nodes[3].parent: unknown node 'nowhere'; expected the id of a common node: remote, region-1",
    ]


def test_cli_rejects_an_invalid_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = write(tmp_path, "[feeds]\n", "matrix.toml")
    assert main(["topology", "show", "--matrix", str(matrix)]) == 2
    assert capsys.readouterr().err.startswith("invalid routing matrix (")
