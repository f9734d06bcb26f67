"""``platsync k8s render|validate|echo-filter-jar``: the Kubernetes manifests (docs/kubernetes.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.runtime.settings import load_settings
from streams.topology.load import TopologyError, load_topology


def _out_dir(args: argparse.Namespace) -> Path:
    """``--out``/``--dir``, else the default for ``--topology`` (infra/k8s/manifests[-<stem>])."""
    # deferred: the manifest generator: ~0.85 s, only for 'k8s'
    from infra.k8s.generate import default_out_dir

    out: Path = args.out if args.out is not None else default_out_dir(args.topology)
    args.out = out
    return out


def cmd_render(args: argparse.Namespace) -> int:
    """Render the manifests into ``--out``; with ``--check`` only report stale files (exit 1)."""
    # deferred: the manifest generator: ~0.85 s, only for 'k8s'
    from infra.k8s.config import DeploymentError

    # deferred: the manifest generator: ~0.85 s, only for 'k8s'
    from infra.k8s.generate import render_file, stale, write

    _out_dir(args)
    try:
        topology = None if args.topology is None else load_topology(args.topology)
    except TopologyError as exc:
        print(f"invalid topology ({len(exc.faults)} fault(s)):", file=sys.stderr)
        for topology_fault in exc.faults:
            print(f"  {topology_fault}", file=sys.stderr)
        return 2
    try:
        files = render_file(args.deployment, topology)
    except DeploymentError as exc:
        print(f"invalid deployment file ({len(exc.faults)} fault(s)):", file=sys.stderr)
        for fault in exc.faults:
            print(f"  {fault}", file=sys.stderr)
        return 2
    if args.check:
        problems = stale(args.out, files)
        if problems:
            print(f"stale manifests in {args.out} (run 'platsync k8s render'):", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        print(f"{len(files)} manifests in {args.out} are up to date")
        return 0
    for path in write(args.out, files):
        print(path)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate every manifest offline (Kubernetes schemas, Strimzi CRD schemas, project rules)."""
    # deferred: the manifest generator: ~0.85 s, only for 'k8s'
    from infra.k8s.config import DeploymentError, load_deployment

    try:
        # deferred: the manifest generator: ~0.85 s, only for 'k8s'
        from infra.k8s.validate import validate_dir
    except ImportError as exc:  # the schemas come with the test extra (~100 MB)
        print(f"platsync k8s validate needs the 'test' extra (kubernetes-validate, jsonschema): {exc}",
              file=sys.stderr)
        return 2

    try:
        version = args.kubernetes_version or load_deployment(args.deployment).config.kubernetes_version
    except DeploymentError as exc:
        print(f"invalid deployment file: {exc}", file=sys.stderr)
        return 2
    out = _out_dir(args)
    files = sorted(out.rglob("*.yaml")) if out.is_dir() else []
    if not files:
        print(f"no manifests in {out}", file=sys.stderr)
        return 1
    errors = validate_dir(out, version)
    for name, problems in errors.items():
        for problem in problems:
            print(f"{name}: {problem}", file=sys.stderr)
    print(f"{len(files)} files, {len(errors)} with errors (Kubernetes {version})")
    return 1 if errors else 0


def cmd_echo_jar(args: argparse.Namespace) -> int:
    """Build the echo filter plugin jar for KafkaConnect ``spec.build``; print its SHA-512."""
    # deferred: the manifest generator: ~0.85 s, only for 'k8s'
    from infra.k8s.echo_jar import EchoJarError, build_jar

    try:
        digest = build_jar(load_settings(args.config, data_dir=args.data_dir), args.out)
    except EchoJarError as exc:
        print(f"platsync k8s echo-filter-jar: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}\nsha512 {digest}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``k8s`` subcommand to the ``platsync`` parser."""
    # deferred: the manifest generator: ~0.85 s, only for 'k8s'
    from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DEFAULT_OUT_DIR

    p = sub.add_parser("k8s", help="render and validate the Kubernetes manifests (infra/k8s)")
    k8s = p.add_subparsers(dest="k8s_command", required=True)
    deployment = argparse.ArgumentParser(add_help=False)
    deployment.add_argument("--deployment", type=Path, default=DEFAULT_DEPLOYMENT_FILE,
                            help=f"deployment file (default {DEFAULT_DEPLOYMENT_FILE})")
    deployment.add_argument("--topology", type=Path,
                            help="a network topology file (infra/topologies/): one directory of manifests per node")
    deployment.add_argument("--out", "--dir", dest="out", type=Path,
                            help=f"manifest directory (default {DEFAULT_OUT_DIR}; with --topology FILE: "
                                 f"{DEFAULT_OUT_DIR}-<FILE stem>, not committed)")
    r = k8s.add_parser("render", parents=[deployment], help="(re)generate the manifests")
    r.add_argument("--check", action="store_true", help="only list stale files; exit 1 if any")
    r.set_defaults(func=cmd_render)
    v = k8s.add_parser("validate", parents=[deployment],
                       help="validate the manifests offline (every *.yaml under the directory, per-node ones too)")
    v.add_argument("--kubernetes-version", help="schemas to validate against (default: the deployment file's)")
    v.set_defaults(func=cmd_validate)
    j = k8s.add_parser("echo-filter-jar", parents=[common], help="build the echo filter jar for Kafka Connect")
    j.add_argument("--out", type=Path, required=True, help="jar file to write")
    j.set_defaults(func=cmd_echo_jar)
