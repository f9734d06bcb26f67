"""Renderings: the JSON shape, and markdown that re-parses to exactly the seed's two tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streams.routing.matrix_model import Matrix
from streams.routing.render import matrix_to_json, matrix_to_markdown

SEEDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "seeds"
HEADINGS = ("### ローカル→リモート連携", "### リモート→ローカル連携")

MF = ["fructos_own", "meta"]
MFP = ["fructos_own", "fructos_patient", "meta"]
#: The brief's tables, literal (lists sorted by name).
EXPECTED_JSON = {
    "local_to_remote": {
        "PRV_USR_001": {"source": MF, "target": MFP},
        "PRV_PAT_001": {"source": MF, "target": MF},
        "PRV_STF_001": {"source": ["meta"], "target": ["meta"]},
        "PRV_STF_003": {"source": ["keycloak", "meta"], "target": ["keycloak", "meta"]},
        "PRV_ATH_001": {"source": ["keycloak"], "target": ["keycloak"]},
        "PRV_DOC_006": {"source": MF, "target": MF},
        "PRV_DOC_007": {"source": MF, "target": MF},
        "PRV_DOC_008": {"source": MF, "target": MF},
        "PRV_DOC_009": {"source": MF, "target": MFP},
        "PLAT_MST_001": {"source": ["meta"], "target": ["meta"]},  # the engine's own: the MHLW master
        "PLAT_MST_002": {"source": ["meta"], "target": ["meta"]},
    },
    "remote_to_local": {
        "PRV_USR_001": {"source": MFP, "target": MF},
        "PRV_PAT_001": {"source": MF, "target": MF},
        "PRV_STF_001": {"source": ["meta"], "target": ["meta"]},
        "PRV_STF_003": {"source": ["keycloak", "meta"], "target": ["keycloak", "meta"]},
        "PRV_ATH_001": {"source": ["keycloak"], "target": ["keycloak"]},
        "PRV_DOC_006": {"source": MF, "target": MF},
        "PRV_DOC_007": {"source": MF, "target": MF},
        "PRV_DOC_008": {"source": MF, "target": MF},
        "PRV_DOC_009": {"source": MFP, "target": MF},
        "PLAT_MST_001": {"source": [], "target": []},  # one way: no master API in the cloud
        "PLAT_MST_002": {"source": [], "target": []},
    },
}


@pytest.fixture(scope="module")
def seed() -> str:
    found = sorted(SEEDS_DIR.glob("000_*.txt"))
    if not found:
        pytest.skip(f"seed spec 000_*.txt not found in {SEEDS_DIR}; cannot compare the rendering to it")
    return found[0].read_text(encoding="utf-8")


def table_lines(text: str, heading: str) -> list[str]:
    """The contiguous ``|``-lines of the first table after ``heading``."""
    lines = text.splitlines()
    start = lines.index(heading) + 1
    while not lines[start].startswith("|"):
        start += 1
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def parse_table(text: str, heading: str) -> list[list[str]]:
    """Cells of every row (header, alignment, body), stripped of surrounding blanks."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table_lines(text, heading)]


def normalise(line: str) -> str:
    """Drop ASCII blanks around pipes (the seed has one header without a space before a pipe)."""
    return re.sub(r"[ \t]*\|[ \t]*", "|", line)


def test_json_shape_and_values(matrix: Matrix) -> None:
    rendered = matrix_to_json(matrix)
    assert rendered == EXPECTED_JSON
    assert list(rendered) == ["local_to_remote", "remote_to_local"]
    for name, apis in rendered.items():
        assert list(apis) == list(EXPECTED_JSON[name])  # matrix order, not sorted
    assert json.loads(json.dumps(rendered, ensure_ascii=False)) == rendered


@pytest.mark.parametrize("heading", HEADINGS)
def test_markdown_reparses_to_seed_table(matrix: Matrix, seed: str, heading: str) -> None:
    rendered = parse_table(matrix_to_markdown(matrix), heading)
    expected = parse_table(seed, heading)
    assert len(rendered) == len(expected) == 11
    for row_rendered, row_seed in zip(rendered, expected, strict=True):
        assert row_rendered == row_seed


@pytest.mark.parametrize("heading", HEADINGS)
def test_markdown_lines_match_seed_lines(matrix: Matrix, seed: str, heading: str) -> None:
    rendered = table_lines(matrix_to_markdown(matrix), heading)
    expected = table_lines(seed, heading)
    assert [normalise(line) for line in rendered] == [normalise(line) for line in expected]
    assert rendered[2:] == expected[2:]  # separator and body rows byte-identical to the seed


def test_markdown_layout(matrix: Matrix) -> None:
    text = matrix_to_markdown(matrix)
    lines = text.splitlines()
    assert lines[0] == HEADINGS[0] and lines[1] == ""
    assert HEADINGS[1] in lines and lines.index(HEADINGS[1]) > 12
    assert text.endswith("|\n")
    local_to_remote = parse_table(text, HEADINGS[0])
    assert local_to_remote[0][2:] == [
        "ローカルMETA",
        "ローカル自医療機関FRUCtoS",
        "ローカルKeycloak",
        "リモートMETA",
        "リモート自医療機関FRUCtoS",
        "リモート患者管理FRUCtoS",
        "リモートKeycloak",
    ]
    remote_to_local = parse_table(text, HEADINGS[1])
    assert remote_to_local[0][2:] == [
        "リモートMETA",
        "リモート自医療機関FRUCtoS",
        "リモート患者管理FRUCtoS",
        "リモートKeycloak",
        "ローカルMETA",
        "ローカル医療機関FRUCtoS",
        "ローカルKeycloak",
    ]
    categories = [row[0] for row in local_to_remote[2:]]
    assert categories == [
        "ユーザ管理",
        "患者管理",
        "スタッフ管理",
        "",
        "認証用アカウント(keycloak)情報",
        "文書管理",
        "",
        "",
        "",
    ]
    # PRV_USR_001 local->remote: local META and own FRUCtoS write; remote META, own and patient FRUCtoS.
    assert local_to_remote[2][2:] == ["○", "○", "", "○", "○", "○", ""]
