"""Renderings of the matrix: JSON for tools and the CLI, markdown in the seed's own layout."""

from __future__ import annotations

from streams.core.model import SIDE_STORES
from streams.routing.matrix_model import Direction, Matrix

SIDE_LABELS: dict[str, str] = {"local": "ローカル", "remote": "リモート"}
STORE_LABELS: dict[str, str] = {
    "meta": "META",
    "fructos_own": "自医療機関FRUCtoS",
    "fructos_patient": "患者管理FRUCtoS",
    "keycloak": "Keycloak",
}
#: Column titles the seed spells differently from the regular pattern, reproduced verbatim:
#: its remote→local table calls the local own FRUCtoS "ローカル医療機関FRUCtoS".
HEADER_OVERRIDES: dict[tuple[str, str, str], str] = {
    ("remote_to_local", "local", "fructos_own"): "ローカル医療機関FRUCtoS",
}
HEADINGS: dict[str, str] = {
    "local_to_remote": "### ローカル→リモート連携",
    "remote_to_local": "### リモート→ローカル連携",
}
#: The engine's own APIs (not the seed's) follow the seed's tables under these headings.
EXTENSION_HEADINGS: dict[str, str] = {
    "local_to_remote": "### ローカル→リモート連携（PLAT Sync 独自: 医療機関マスタ）",
    "remote_to_local": "### リモート→ローカル連携（PLAT Sync 独自: 医療機関マスタ）",
}
MARK = "○"


def matrix_to_json(matrix: Matrix) -> dict[str, dict[str, dict[str, list[str]]]]:
    """``{route: {API_ID: {"source": [...], "target": [...]}}}``; lists sorted, APIs in matrix order."""
    return {
        direction.name: {r.api_id: {"source": sorted(r.source), "target": sorted(r.target)} for r in direction.routes}
        for direction in matrix.directions
    }


def columns(direction: Direction) -> list[tuple[str, str, str]]:
    """The store columns of a direction's table as ``(side, store, title)``, in the seed's order."""
    cols = []
    for side in (direction.source_side, direction.target_side):
        for store in SIDE_STORES[side]:
            default = SIDE_LABELS[side] + STORE_LABELS[store]
            cols.append((side, store, HEADER_OVERRIDES.get((direction.name, side, store), default)))
    return cols


def direction_to_markdown(direction: Direction, from_seed: bool = True) -> list[str]:
    """The heading and table lines of one direction, formatted like the seed: the seed's APIs, or
    (``from_seed`` False) the engine's own."""
    cols = columns(direction)
    headings = HEADINGS if from_seed else EXTENSION_HEADINGS
    lines = [headings.get(direction.name, f"### {direction.name}"), ""]
    lines.append("| | API名 | " + " | ".join(title for _, _, title in cols) + " |")
    lines.append("|" + ":---:|" * (len(cols) + 2))
    previous_category: str | None = None
    for r in (r for r in direction.routes if r.from_seed == from_seed):
        category = r.category if r.category != previous_category else " "
        previous_category = r.category
        marks = []
        for side, store, _ in cols:
            stores = r.source if side == direction.source_side else r.target
            marks.append(MARK if store in stores else " ")
        lines.append("|" + "|".join([category, r.label, *marks]) + "|")
    return lines


def matrix_to_markdown(matrix: Matrix) -> str:
    """Both tables (local→remote, then remote→local) in the layout of seed 000, section 3; then, in the same
    layout, the engine's own APIs if the matrix has any."""
    lines: list[str] = []
    own = any(not r.from_seed for d in matrix.directions for r in d.routes)
    for from_seed in (True, False) if own else (True,):
        for direction in matrix.directions:
            if lines:
                lines.append("")
            lines.extend(direction_to_markdown(direction, from_seed))
    return "\n".join(lines) + "\n"
