"""The records of the least-privilege policy: a database role and one grant (:mod:`streams.ops.access_policy`).

Their own module so that the policy of the stores (:mod:`streams.ops.access_policy`) and the policy of the
sharing processes (:mod:`streams.ops.sharing_access`) share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DbRole:
    """One PostgreSQL login role."""

    key: str
    name: str
    attributes: tuple[str, ...]
    used_by: str
    why: str


@dataclass(frozen=True)
class DbGrant:
    """Privileges of one role on one object of one database (``columns``: column-level)."""

    role: str  # role key
    database: str
    # identity: name is "table.column"; function: name is "schema.function(argument types)"
    object_type: Literal["table", "sequence", "identity", "function"]
    name: str
    privileges: tuple[str, ...]
    columns: tuple[str, ...] = ()

    def sql(self, role_name: str, sequence_name: str | None = None) -> str:
        """The GRANT statement (``sequence_name``: the resolved sequence of an identity column)."""
        cols = f" ({', '.join(self.columns)})" if self.columns else ""
        privileges = ", ".join(f"{p}{cols}" for p in self.privileges)
        if self.object_type == "table":
            return f'GRANT {privileges} ON TABLE {self.name} TO "{role_name}"'
        if self.object_type == "function":
            return f'GRANT {privileges} ON FUNCTION {self.name} TO "{role_name}"'
        return f'GRANT {privileges} ON SEQUENCE {sequence_name or self.name} TO "{role_name}"'


#: Attributes of every login role but the admin.
NO_ADMIN = ("LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOBYPASSRLS")
