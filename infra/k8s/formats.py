"""The shapes of ``deployment.toml`` values, shared by :mod:`infra.k8s.config` and :mod:`infra.k8s.backup_config`."""

from __future__ import annotations

import re

QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Mi|Gi|Ki|Ti)?$")  # a Kubernetes quantity
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ACCESS_MODES = frozenset({"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"})  # a claim's
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?-]+$")
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def is_cron(schedule: str) -> bool:
    """Whether ``schedule`` is a CronJob schedule: five fields, or a macro (``@daily``)."""
    fields = schedule.split()
    return schedule.strip() in CRON_MACROS or (len(fields) == 5 and all(CRON_FIELD.match(f) for f in fields))
