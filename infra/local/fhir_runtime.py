"""The embedded stack's FHIR processes (docs/fhir.md): the cloud's FHIR worker and the sharing service stand-in.

A stack whose cloud PostgreSQL it runs (the default, two sites on one machine) runs the cloud's FHIR worker
(``fhir-remote``: the 6 information summary and the submissions) and, unless ``fhir_submission_url`` names
the real national sharing service, the stand-in it submits to (``fhir-standin``, on ``fhir_standin_port``,
keeping what it received under ``<data_dir>/fhir-standin``). A network (``platsync up --topology``) runs one
pair for its cloud, with the network's own settings and a role of its own on the cloud's shared store
(:func:`provision_network_fhir`); its home links' stacks run none.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import psycopg

from infra.local.db_roles import admin_conninfo, apply_grants, ensure_role
from infra.local.fhir_service_standin import standin_ready, standin_spec
from infra.local.process import ProcessError, ProcessSpec, log_path, read_pid, start_process, stop_process, wait_until
from streams.apply.fhir_worker import PROCESS as WORKER
from streams.apply.fhir_worker import submission_url
from streams.core.model import REPLICA_STORE
from streams.ops.access_policy import db_grants, db_roles
from streams.runtime.credentials import FHIR
from streams.runtime.settings import Settings

STANDIN = "fhir-standin"
Say = Callable[[str], None]


def runs_fhir(settings: Settings) -> bool:
    """Whether this stack runs the cloud's FHIR worker: it runs the cloud's PostgreSQL."""
    return settings.node("remote").pg_managed


def fhir_process_names(settings: Settings) -> list[str]:
    """The FHIR processes of this stack, in start order (none if it does not run the cloud's store)."""
    if not runs_fhir(settings):
        return []
    return ([] if settings.fhir_submission_url else [STANDIN]) + [WORKER]


def fhir_up(settings: Settings, worker_spec: ProcessSpec, say: Say) -> None:
    """Start the stand-in (waiting until it answers) and the FHIR worker, those not running yet."""
    names = fhir_process_names(settings)
    if STANDIN in names:
        if read_pid(settings.data_dir, STANDIN) is None:
            (settings.data_dir / STANDIN).mkdir(parents=True, exist_ok=True)
            start_process(settings.data_dir, standin_spec(STANDIN, settings.host, settings.fhir_standin_port,
                                                          settings.data_dir / STANDIN))
        wait_until(lambda: standin_ready(settings.host, settings.fhir_standin_port), settings.ready_timeout_s,
                   "FHIR sharing service stand-in", alive=lambda: read_pid(settings.data_dir, STANDIN) is not None,
                   log=log_path(settings.data_dir, STANDIN))
        say(f"FHIR sharing service (embedded stand-in) ready on {submission_url(settings)}")
    if WORKER in names:
        if read_pid(settings.data_dir, WORKER) is None:
            start_process(settings.data_dir, worker_spec)
        say(f"FHIR worker started: 6 information summary of the cloud, submissions to {submission_url(settings)}")


def stop_fhir(settings: Settings, say: Say) -> None:
    """Stop the FHIR worker, then the stand-in (a network's; a stack stops its own as components)."""
    for name in (WORKER, STANDIN):
        if stop_process(settings.data_dir, name, 30):
            say(f"stopped {name}")


def provision_network_fhir(base: Settings) -> None:
    """A network's FHIR worker role (``platsync_fhir``, the network's own password) and its grants on the cloud's
    shared store, which its home links' provisioning already created (idempotent)."""
    role = next(r for r in db_roles(base) if r.key == FHIR)
    grants = [g for g in db_grants("remote") if g.role == FHIR and g.database == REPLICA_STORE]
    with psycopg.connect(admin_conninfo(base, "remote", REPLICA_STORE), autocommit=True) as conn:
        name = ensure_role(conn, base, "remote", role)
        missing = apply_grants(conn, REPLICA_STORE, [name], ((name, g) for g in grants))
    if missing:
        raise ProcessError(f"the cloud's {REPLICA_STORE} lacks {', '.join(missing)}: provision a home link first")


def worker_spec(settings: Settings) -> ProcessSpec:
    """How a network runs its cloud's FHIR worker (the network's settings file)."""
    return ProcessSpec(name=WORKER, argv=[sys.executable, "-m", "streams.apply.fhir_worker",
                                          "--config", str(settings.data_dir / "platsync.toml"),
                                          "--data-dir", str(settings.data_dir)], env={"PGAPPNAME": WORKER})
