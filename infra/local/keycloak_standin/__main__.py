"""Run one side's Keycloak stand-in: ``python -m infra.local.keycloak_standin --side local``.

Reads the settings (``streams.runtime.settings.load_settings``), provisions Keycloak's account tables in
``keycloak_db_dsn(side)`` with realms ``master`` (holding the configured admin) and
``keycloak_realm``, then serves on ``host:keycloak_port(side)`` until SIGTERM/SIGINT (exit 0).
The token signing key lives in ``<data_dir>/secrets/keycloak-standin-<side>.key`` so that tokens
survive a restart, as Keycloak's realm keys do. Logs one line per request, never a body.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

from infra.local.keycloak_standin import standin_ready, standin_url
from infra.local.keycloak_standin.server import run
from infra.local.keycloak_standin.storage import provision
from streams.runtime.connections import keycloak_db_dsn
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.settings import Settings, SettingsError, load_settings

__all__ = ["main", "signing_key", "standin_ready"]


def signing_key(settings: Settings, side: str) -> bytes:
    """The side's persistent HS256 signing key (created with mode 0600 on first use)."""
    path = settings.data_dir / "secrets" / f"keycloak-standin-{side}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def main(argv: list[str] | None = None) -> int:
    """Provision and serve; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.keycloak_standin",
                                     description="Keycloak stand-in (token endpoint + Admin REST users)")
    parser.add_argument("--side", required=True, choices=("local", "remote"))
    parser.add_argument("--config", type=Path, help="settings TOML file")
    parser.add_argument("--data-dir", type=Path, help="data dir (default from settings)")
    parser.add_argument("--refresh-ttl-s", type=int, default=1800, help="refresh token lifetime (SSO idle)")
    parser.add_argument("--no-verify-profile", action="store_true",
                        help="model realms whose VERIFY_PROFILE required action is disabled")
    args = parser.parse_args(argv)
    configure_logging(f"keycloak-{args.side}")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
        configure_for(settings, f"keycloak-{args.side}")
    except (SettingsError, ValueError) as exc:
        print(f"keycloak-standin: {exc}", file=sys.stderr)
        return 2


    side = args.side
    dsn = keycloak_db_dsn(settings, side)
    try:
        provision(dsn, ["master", settings.keycloak_realm], settings.keycloak_admin_user,
                  settings.keycloak_admin_password)
    except Exception as exc:  # noqa: BLE001 - report any database failure in one line and exit
        print(f"keycloak-standin: cannot provision Keycloak's tables for {side}: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 2
    logging.info("serving %s side on %s (realms master, %s; token TTL %ss)", side, standin_url(settings, side),
                 settings.keycloak_realm, settings.keycloak_token_ttl_s)
    run(settings.host, settings.keycloak_port(side), dsn, settings.keycloak_token_ttl_s,
        signing_key(settings, side), refresh_ttl_s=args.refresh_ttl_s, verify_profile=not args.no_verify_profile)
    logging.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
