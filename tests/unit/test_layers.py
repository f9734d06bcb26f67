"""The code is layered by role and no module imports a higher layer (issue 14).

Layers, lowest first: the pure core (change model, codec, routing, topology), the runtime (settings as
data, credentials, state files, retry policy, Kafka configuration), the engine (capture, sinks and
stores in ``connectors/``; the apply agent, worker and mode server in ``streams/apply/``), the
operator reports (``streams/ops/``), the infrastructure (the embedded stack and Kubernetes in
``infra/``) and, on top, the command line and the benchmark that drive all of it. Imports inside
functions and under ``if TYPE_CHECKING:`` count like any other: they are part of the design.

A function-level import of a project module is allowed only to defer a heavy import; it says so with
a ``# deferred: <why>`` comment on its line or the line above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.test_import_cycles import REPO, import_graph, module_files

#: (layer, module prefixes), lowest first.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("streams.core", "streams.routing", "streams.topology", "streams.sharing", "streams.master",
              "streams.fhir")),
    ("runtime", ("streams.runtime",)),
    ("engine", ("connectors", "streams.apply")),
    ("ops", ("streams.ops",)),
    ("infra", ("infra",)),
    ("cli", ("streams.cli", "streams.console", "bench")),
)


def layer_of(module: str) -> int:
    """Index of the layer a module belongs to; ``ValueError`` for a module outside every layer."""
    found = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
             if module == prefix or module.startswith(prefix + ".")]
    if not found:
        raise ValueError(module)
    return max(found)[1]


def test_every_module_has_a_layer() -> None:
    orphans = []
    for module in module_files():
        if module in ("streams", "connectors", "infra", "bench"):
            continue
        try:
            layer_of(module)
        except ValueError:
            orphans.append(module)
    assert orphans == [], f"modules outside every layer (add them to a layer package): {orphans}"


def test_no_module_imports_a_higher_layer() -> None:
    modules = module_files()
    graph = import_graph(modules)
    upward = []
    for module, targets in sorted(graph.items()):
        if module in ("streams", "connectors", "infra", "bench"):
            continue
        for target in sorted(targets):
            if target in ("streams", "connectors", "infra", "bench"):
                continue
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert upward == [], "imports into a higher layer:\n" + "\n".join(upward)


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every project import inside a function or a TYPE_CHECKING block."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                    found.append((inner.lineno, inner.module))
                elif isinstance(inner, ast.Import):
                    found.extend((inner.lineno, alias.name) for alias in inner.names)
    return [(line, mod) for line, mod in found if mod.split(".")[0] in ("streams", "connectors", "infra", "bench")]


def test_function_level_project_imports_say_why() -> None:
    """Each one defers a heavy import (Faust, Debezium, SQLAlchemy, ...) and says so on its line."""
    unexplained = []
    for path in sorted(module_files().values()):
        lines = path.read_text(encoding="utf-8").splitlines()
        for line_no, target in function_level_imports(path):
            statement = lines[line_no - 1]
            # a parenthesised import carries its comment on the first or last line
            tail = next((lines[i] for i in range(line_no - 1, min(len(lines), line_no + 12)) if ")" in lines[i]
                         or "import" in lines[i] and "(" not in lines[i]), statement)
            above = lines[line_no - 2].strip() if line_no > 1 else ""
            if "# deferred" not in statement and "# deferred" not in tail and not above.startswith("# deferred"):
                unexplained.append(f"{path.relative_to(REPO)}:{line_no}: {target}")
    assert unexplained == [], ("function-level imports without '# deferred: <why>' (hoist them to the top "
                               "unless they defer a heavy import):\n" + "\n".join(unexplained))


@pytest.mark.parametrize(("module", "layer"), [
    ("streams.core.model", "core"), ("streams.routing.route", "core"), ("streams.runtime.settings", "runtime"),
    ("connectors.capture.runner", "engine"), ("streams.apply.worker", "engine"), ("streams.ops.dlq", "ops"),
    ("infra.local.stack", "infra"), ("streams.cli.main", "cli"), ("bench.runner", "cli"),
])
def test_layer_table(module: str, layer: str) -> None:
    assert LAYERS[layer_of(module)][0] == layer
