"""Run the schema-registry stand-in: ``python -m infra.local.schema_registry_standin --port PORT``.

Options: ``--host`` (default 127.0.0.1), ``--state-file`` (subjects, ids and levels survive a
restart, as a real registry keeps them in its ``_schemas`` topic; default: memory only),
``--compatibility`` (the global default level, BACKWARD). Basic auth: the environment variable
``PLATSYNC_SCHEMA_REGISTRY_STANDIN_AUTH=user:password`` (not an option, so it never shows in ``ps``).
Serves until SIGTERM/SIGINT (exit 0); exit 2 on bad usage or a port it cannot bind.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from infra.local.schema_registry_standin.registry import LEVELS, Registry, RegistryError
from infra.local.schema_registry_standin.server import run


def main(argv: list[str] | None = None) -> int:
    """Parse the options and serve; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.schema_registry_standin",
                                     description="Confluent-compatible schema registry stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, help="JSON file keeping the registry's state across restarts")
    parser.add_argument("--compatibility", default="BACKWARD", type=str.upper, choices=LEVELS,
                        help="global default compatibility level")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s schema-registry-standin: %(message)s")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    auth = os.environ.get("PLATSYNC_SCHEMA_REGISTRY_STANDIN_AUTH", "")
    if auth and ":" not in auth:
        print("schema-registry-standin: PLATSYNC_SCHEMA_REGISTRY_STANDIN_AUTH must be user:password", file=sys.stderr)
        return 2
    try:
        registry = Registry(args.state_file, args.compatibility)
    except (OSError, ValueError, KeyError, RegistryError) as exc:
        print(f"schema-registry-standin: cannot read the state file {args.state_file}: {exc}", file=sys.stderr)
        return 2

    logging.info("serving on http://%s:%d (global compatibility %s%s%s)", args.host, args.port,
                 registry.global_level, ", basic auth" if auth else "",
                 f", state {args.state_file}" if args.state_file else "")
    try:
        run(args.host, args.port, registry, auth)
    except OSError as exc:
        print(f"schema-registry-standin: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    logging.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
