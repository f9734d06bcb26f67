"""Renderings of a topology with its links: JSON for tools, readable text for ``platsync topology show``.

Store lists keep the matrix's order (``meta, fructos_own, fructos_patient``), as the matrix file
writes them; nodes and links keep the topology's order (see :meth:`Topology.links`).
"""

from __future__ import annotations

from typing import Any

from streams.routing.matrix_model import Matrix, default_matrix_path
from streams.topology.model import Link, Node, Topology
from streams.topology.plan import NetworkPlan, build_plan


def _numbers(node: Node) -> dict[str, list[int]]:
    return {
        "patient_numbers": [node.patient_numbers.lo, node.patient_numbers.hi],
        "document_numbers": [node.document_numbers.lo, node.document_numbers.hi],
    }


def topology_to_json(topology: Topology, matrix: Matrix) -> dict[str, Any]:
    """``{"file", "default", "root", "nodes": [...], "links": [{..., "routes": [...]}]}``."""
    return {
        "file": topology.path or None,
        "default": topology.is_default,
        "root": topology.root.id,
        "nodes": [
            {
                "id": node.id,
                "kind": node.kind,
                "parent": node.parent,
                "institution": node.institution,
                **_numbers(node),
                "children": [child.id for child in topology.children(node.id)],
            }
            for node in topology.nodes
        ],
        "links": [
            {
                "name": link.name,
                "kind": link.kind,
                "upper": link.upper,
                "lower": link.lower,
                "one_way": link.one_way,
                "routes": [
                    {
                        "direction": r.direction,
                        "api_id": r.api_id,
                        "source_node": r.source_node,
                        "source": list(r.source),
                        "target_node": r.target_node,
                        "target": list(r.target),
                    }
                    for r in link.routes
                ],
            }
            for link in topology.links(matrix)
        ],
        "plan": plan_to_json(build_plan(topology, matrix)),
    }


def plan_to_json(plan: NetworkPlan, prefix: str = "platsync") -> dict[str, Any]:
    """The endpoints (stores, databases, capture topics), routes and processes of a plan."""
    return {
        "endpoints": [
            {"id": e.id, "node": e.node, "role": e.role, "tenant": e.tenant, "stores": list(e.stores),
             "databases": dict(e.databases), "topics": list(plan.topics_of(prefix, e.id))}
            for e in plan.endpoints
        ],
        "routes": [
            {"name": r.name, "link": r.link, "direction": r.direction, "source": r.source, "target": r.target,
             "target_stores": list(r.target_stores), "reads": [f"{e}:{store}" for e, store in r.reads],
             "runs_on": plan.node_of_process(f"worker-{r.name}")}
            for r in plan.routes
        ],
        "processes": {p: plan.node_of_process(p) for p in plan.processes()},
    }


def _plan_lines(plan: NetworkPlan, prefix: str = "platsync") -> list[str]:
    lines = [f"endpoints ({len(plan.endpoints)}; topics with prefix '{prefix}'):"]
    for e in plan.endpoints:
        what = {"local": "hospital", "remote": f"the cloud's stores of {e.tenant}", "replica": "read-only replicas"}
        databases = ", ".join(db if db == store else f"{store}={db}" for store, db in e.databases)
        lines.append(f"{e.id} on {e.node} ({what[e.role]}): databases {databases}")
        captured = plan.topics_of(prefix, e.id)
        lines.append(f"  captured to {', '.join(captured)}" if captured else "  nothing captured")
    lines += ["", f"routes ({len(plan.routes)}; each applied by worker-<route> beside its target):"]
    lines += [f"{r.name}: {r.source} -> {r.target} ({r.link}; reads {', '.join(f'{e}:{st}' for e, st in r.reads)}; "
              f"writes {', '.join(r.target_stores)})" for r in plan.routes]
    return lines


def _node_line(topology: Topology, node: Node) -> str:
    if node.kind == "hospital":
        what = "hospital" + (f", institution {node.institution}" if node.institution else "")
    else:
        what = "common, root: the cloud" if node.parent is None else "common, regional server"
    return (f"{node.id} ({what})  patient numbers {node.patient_numbers}, "
            f"document numbers {node.document_numbers}")


def _tree(topology: Topology) -> list[str]:
    """The nodes as a tree drawn from the root, children in file order."""
    lines: list[str] = []

    def visit(node: Node, prefix: str, branch: str, last: bool) -> None:
        lines.append(prefix + branch + _node_line(topology, node))
        children = topology.children(node.id)
        inner = prefix + ("" if not branch else "   " if last else "│  ")
        for index, child in enumerate(children):
            final = index == len(children) - 1
            visit(child, inner, "└─ " if final else "├─ ", final)

    visit(topology.root, "", "", True)
    return lines


def _link_lines(link: Link) -> list[str]:
    if link.one_way:
        head = f"{link.name}: {link.lower} -> {link.upper}  (replica link, one way: read-only copies)"
    else:
        head = f"{link.name}: {link.lower} <-> {link.upper}  (home link, both ways, direct to the cloud root)"
    lines = [head]
    for direction in link.directions:
        routes = [r for r in link.routes if r.direction == direction]
        lines.append(f"  {routes[0].source_node} -> {routes[0].target_node} (matrix {direction}):")
        lines.extend(f"    {r.api_id}: {', '.join(r.source)} -> {', '.join(r.target)}" for r in routes)
    return lines


def _matrix_origin(matrix: Matrix) -> str:
    if not matrix.path or matrix.path == str(default_matrix_path()):
        return "the packaged streams/routing/matrix.toml"
    return matrix.path


def topology_to_text(topology: Topology, matrix: Matrix) -> str:
    """The node tree, then every link with its direction and its routes per API."""
    hospitals = len(topology.hospitals)
    origin = topology.path or "built-in default"
    lines = [
        f"topology: {origin}" + ("  (the default: hospital 'local' under the cloud 'remote')"
                                 if topology.is_default else ""),
        f"matrix: {_matrix_origin(matrix)}",
        "",
        f"nodes ({len(topology.nodes)}: {hospitals} hospital{'s' * (hospitals != 1)}, "
        f"{len(topology.nodes) - hospitals} common):",
        *_tree(topology),
    ]
    links = topology.links(matrix)
    lines += ["", f"links ({len(links)}):"]
    for link in links:
        lines.extend(_link_lines(link))
    lines += ["", *_plan_lines(build_plan(topology, matrix))]
    return "\n".join(lines) + "\n"
