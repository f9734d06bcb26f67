"""``[k8s.backup]`` of ``infra/k8s/deployment.toml``: the nightly backup CronJobs (infra/k8s/backup_job.py).

Kept out of :mod:`infra.k8s.config` (which imports this module): the schedule itself is the setting
``backup_schedule`` (UTC, streams/runtime/settings.py); this table says where the backups go and how the jobs
run, and ``[k8s.backup.nodes.<id>]`` overrides the schedule or the parent's storage for one node.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from infra.k8s.formats import ACCESS_MODES, DNS_LABEL, QUANTITY, is_cron


@dataclass(frozen=True)
class BackupNodeConfig:
    """``[k8s.backup.nodes.<id>]``: one node's overrides (None: the deployment's)."""

    schedule: str | None = None  # cron, UTC; None: [settings] backup_schedule
    parent_claim: str | None = None  # None: [k8s.backup] parent_claim (hospitals only); "": do not ship


@dataclass(frozen=True)
class BackupJobConfig:
    """The backup CronJob of each node with stores (``[k8s.backup]``; docs/kubernetes.md, section 11)."""

    claim: str = "platsync-backups"  # the node's own backups (backup_dir): <claim>-<endpoint>
    create_claim: bool = True  # False: the claims exist already (not rendered)
    storage: str = "20Gi"  # each rendered claim's size: backup_keep backups of the node's databases
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)  # only the job writes it
    # The parent's storage (backup_parent_dir): an existing claim, e.g. a ReadWriteMany volume the cloud exports;
    # never rendered (the copies must outlive these manifests). Empty: the jobs run with --no-ship.
    parent_claim: str = ""
    starting_deadline_seconds: int = 3600  # a run missed by more than this (cluster down) is skipped
    active_deadline_seconds: int = 14400  # a run (its retries included) still going after this is stopped
    backoff_limit: int = 2  # retries of a failed run (each one a complete new backup)
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 3
    nodes: dict[str, BackupNodeConfig] = field(default_factory=dict)

    def schedule(self, node: str, default: str) -> str:
        """The node's schedule: its override, else ``default`` (the setting ``backup_schedule``)."""
        override = self.nodes.get(node, BackupNodeConfig()).schedule
        return default if override is None else override

    def parent_of(self, node: str, has_parent: bool) -> str:
        """The claim a node ships to ("" for none): its override, else ``parent_claim`` if the node has a parent
        (a hospital; the cloud root has none)."""
        override = self.nodes.get(node, BackupNodeConfig()).parent_claim
        if override is not None:
            return override
        return self.parent_claim if has_parent else ""


def cron_fault(schedule: str) -> str | None:
    """Why ``schedule`` is not a cron schedule (None if it is)."""
    if is_cron(schedule):
        return None
    return f"schedule {schedule!r} is not a cron schedule (5 fields, UTC, e.g. \"30 17 * * *\", or @daily)"


def _claim_fault(key: str, claim: str) -> str | None:
    return None if DNS_LABEL.match(claim) and len(claim) <= 63 else f"{key} {claim!r} is not a DNS label"


def _nodes_from(raw: Any, faults: list[str]) -> dict[str, BackupNodeConfig]:
    out: dict[str, BackupNodeConfig] = {}
    if not isinstance(raw, dict):
        faults.append("[k8s.backup] nodes must be a table of [k8s.backup.nodes.<id>] tables")
        return out
    known = [f.name for f in fields(BackupNodeConfig)]
    for node, table in raw.items():
        where = f"[k8s.backup.nodes.{node}]"
        if not isinstance(table, dict):
            faults.append(f"{where} must be a table of {', '.join(known)}")
            continue
        faults += [f"{where} unknown key {k!r}; known: {', '.join(known)}" for k in table if k not in known]
        values = {k: v for k, v in table.items() if k in known}
        for key, value in values.items():
            if not isinstance(value, str):
                faults.append(f"{where} {key} expects str, got {value!r}")
        if any(not isinstance(v, str) for v in values.values()):
            continue
        cfg = BackupNodeConfig(**values)
        if cfg.schedule is not None and (fault := cron_fault(cfg.schedule)):
            faults.append(f"{where} {fault}")
        if cfg.parent_claim and (fault := _claim_fault("parent_claim", cfg.parent_claim)):
            faults.append(f"{where} {fault}")
        out[node] = cfg
    return out


def backup_from(raw: Any, faults: list[str]) -> BackupJobConfig:
    """The ``[k8s.backup]`` table (every fault recorded in ``faults``)."""
    where, defaults = "[k8s.backup]", BackupJobConfig()
    if not isinstance(raw, dict):
        faults.append(f"{where} must be a table")
        return defaults
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "nodes":
            values[key] = _nodes_from(value, faults)
            continue
        if key not in {f.name for f in fields(defaults)}:
            faults.append(f"{where} unknown key {key!r}; known: {', '.join(f.name for f in fields(defaults))}")
            continue
        default = getattr(defaults, key)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if type(value) is not type(default):
            faults.append(f"{where} {key} expects {type(default).__name__}, got {value!r}")
            continue
        values[key] = value
    cfg = dataclasses.replace(defaults, **values)
    claims = [("claim", cfg.claim), *([("parent_claim", cfg.parent_claim)] if cfg.parent_claim else [])]
    faults += [f"{where} {fault}" for key, claim in claims if (fault := _claim_fault(key, claim))]
    if not QUANTITY.match(cfg.storage):
        faults.append(f"{where} storage {cfg.storage!r} is not a quantity")
    if not cfg.access_modes or set(cfg.access_modes) - ACCESS_MODES:
        faults.append(f"{where} access_modes {list(cfg.access_modes)} must be some of "
                      f"{', '.join(sorted(ACCESS_MODES))}")
    faults += [f"{where} {name} must be >= 1" for name in ("starting_deadline_seconds", "active_deadline_seconds")
               if getattr(cfg, name) < 1]
    faults += [f"{where} {name} must be >= 0"
               for name in ("backoff_limit", "successful_jobs_history_limit", "failed_jobs_history_limit")
               if getattr(cfg, name) < 0]
    return cfg
