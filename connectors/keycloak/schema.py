"""The subset of Keycloak's own database schema (PostgreSQL, Keycloak 2x) that holds accounts.

These are Keycloak's table and column names as created by its Liquibase changelogs: the
capture reads accounts from exactly these tables, so a real Keycloak on PostgreSQL and the
embedded stand-in (which stores its accounts in the same layout) are captured the same way.
Only the columns the engine reads or the stand-in writes are listed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

#: Tables whose changes mean "an account changed" (captured by Debezium).
ACCOUNT_TABLES: tuple[str, ...] = ("user_entity", "credential", "user_attribute", "user_required_action")


def keycloak_metadata() -> MetaData:
    """Keycloak's realm and account tables (subset of columns, Keycloak's names and types)."""
    md = MetaData()
    Table(
        "realm", md,
        Column("id", String(36), primary_key=True),
        Column("name", String(255), unique=True),
        Column("enabled", Boolean, nullable=False, server_default=text("false")),
    )
    Table(
        "user_entity", md,
        Column("id", String(36), primary_key=True),
        Column("email", String(255)),
        Column("email_constraint", String(255)),
        Column("email_verified", Boolean, nullable=False, server_default=text("false")),
        Column("enabled", Boolean, nullable=False, server_default=text("false")),
        Column("federation_link", String(255)),
        Column("first_name", String(255)),
        Column("last_name", String(255)),
        Column("realm_id", String(255)),
        Column("username", String(255)),
        Column("created_timestamp", BigInteger),
        Column("service_account_client_link", String(255)),
        Column("not_before", Integer, nullable=False, server_default=text("0")),
        UniqueConstraint("realm_id", "username", name="uk_ru8tt6t700s9v50bu18ws5ha6"),
        UniqueConstraint("realm_id", "email_constraint", name="uk_dykn684sl8up1crfei6eckhd7"),
    )
    Table(
        "credential", md,
        Column("id", String(36), primary_key=True),
        Column("salt", LargeBinary),
        Column("type", String(255)),
        Column("user_id", String(36)),
        Column("created_date", BigInteger),
        Column("user_label", String(255)),
        Column("secret_data", Text),
        Column("credential_data", Text),
        Column("priority", Integer),
    )
    Table(
        "user_attribute", md,
        Column("name", String(255), nullable=False),
        Column("value", String(255)),
        Column("user_id", String(36), nullable=False),
        Column("id", String(36), primary_key=True, server_default=text("'sybase-needs-something-here'")),
        Column("long_value_hash", LargeBinary),
        Column("long_value_hash_lower_case", LargeBinary),
        Column("long_value", Text),
    )
    Table(
        "user_required_action", md,
        Column("user_id", String(36), nullable=False),
        Column("required_action", String(255), nullable=False, server_default=text("' '")),
        PrimaryKeyConstraint("required_action", "user_id", name="constraint_required_action"),
    )
    return md
