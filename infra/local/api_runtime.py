"""The embedded stack's reference API servers: ``api-local`` and ``api-remote`` (docs/reference_api_http.md).

Each node with an API port (``api_port``, flat ``api_<side>_port``; 0 means none) runs
``python -m connectors.reference_api.http_server --side SIDE`` with the stack's settings file, started after
the mode servers (their state file gives ``X-Hybridmode``) and stopped with the rest of the stack on ``down``.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

from infra.local.process import ProcessSpec, log_path, read_pid, start_process, wait_until
from streams.core.model import SIDES
from streams.runtime.settings import Settings

MODULE = "connectors.reference_api.http_server"
Say = Callable[[str], None]
SpecFor = Callable[..., ProcessSpec]


def api_ready(settings: Settings, side: str, timeout_s: float = 1.0) -> bool:
    """True once ``side``'s API answers ``GET /healthz`` with 200."""
    url = f"http://{settings.host}:{settings.api_port(side)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback URL we built
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def api_sides(settings: Settings) -> list[str]:
    """The sides whose node serves the reference API over HTTP (an API port is set)."""
    return [side for side in SIDES if settings.api_port(side)]


def api_process_names(settings: Settings) -> list[str]:
    """The API server processes of this stack, in start order."""
    return [f"api-{side}" for side in api_sides(settings)]


def apis_up(settings: Settings, spec_for: SpecFor, say: Say) -> None:
    """Start each side's API server not running yet (``spec_for(name, module, *args)`` builds its process) and
    wait until it answers ``GET /healthz``."""
    for side in api_sides(settings):  # all started first: each start is mostly imports
        if read_pid(settings.data_dir, f"api-{side}") is None:
            start_process(settings.data_dir, spec_for(f"api-{side}", MODULE, "--side", side))
    for side in api_sides(settings):
        name = f"api-{side}"
        wait_until(lambda side=side: api_ready(settings, side), settings.ready_timeout_s, f"reference API of {side}",
                   alive=lambda name=name: read_pid(settings.data_dir, name) is not None,
                   log=log_path(settings.data_dir, name))
        say(f"API  {side:6} served on http://{settings.host}:{settings.api_port(side)}/api/v1/ "
            f"(OpenAPI: /api/v1/openapi.json; tokens of realm {settings.keycloak_realm})")
