"""The one place that builds Kafka client configuration (docs/broker_security.md).

Every confluent-kafka client of the engine gets its connection settings from
:func:`client_config`, the Faust app from :func:`faust_broker_options`; each call site adds only
its own tuning (acks, idempotence, linger, timeouts...).

``broker_security_protocol``:

- ``plaintext``: no TLS, no authentication (the embedded default).
- ``ssl``: TLS; the broker certificate is verified against ``broker_ca_file`` (empty: the
  embedded stack's generated CA) including its host name.
- ``sasl_ssl``: TLS plus SASL authentication (``broker_sasl_mechanism``: SCRAM-SHA-256,
  SCRAM-SHA-512 or PLAIN). With ``broker_username`` set every process authenticates as that
  user (in production each Deployment sets its own, see streams/ops/access_policy.py); empty, each
  process of the embedded stack authenticates as its own principal
  (:func:`streams.ops.access_policy.kafka_principals`) with the password generated once into
  ``<data_dir>/secrets/broker/users.json``.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.core.errors import PlatSyncError
from streams.runtime.credentials import kafka_principals
from streams.runtime.settings import PROTOCOLS

if TYPE_CHECKING:
    from streams.runtime.settings import Settings

#: The principal of operator tools and of callers that name none.
OPERATOR = "operator"


class BrokerSecurityError(PlatSyncError, RuntimeError):
    """The broker's CA file or the generated credentials are missing or unreadable."""


def broker_secrets_dir(settings: Settings) -> Path:
    """Where the embedded stack keeps its broker CA, certificate, key and users."""
    return settings.data_dir / "secrets" / "broker"


def ca_file(settings: Settings) -> Path:
    """The CA that signs the broker certificate: ``broker_ca_file`` or the embedded stack's."""
    return Path(settings.broker_ca_file).expanduser() if settings.broker_ca_file \
        else broker_secrets_dir(settings) / "ca.pem"


def users_file(settings: Settings) -> Path:
    """The embedded stack's generated SASL users (``{user: password}``, mode 0600)."""
    return broker_secrets_dir(settings) / "users.json"


def principal_user(settings: Settings, principal: str = OPERATOR) -> str:
    """The SASL user name a process authenticates as."""
    if settings.broker_username:
        return settings.broker_username
    users = kafka_principals(settings)
    if principal not in users:
        raise BrokerSecurityError(f"unknown Kafka principal {principal!r}; known: {', '.join(sorted(users))}")
    return users[principal]


def generated_users(settings: Settings) -> dict[str, str]:
    """The embedded stack's users and passwords (written once by ``platsync up``)."""
    path = users_file(settings)
    try:
        users = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BrokerSecurityError(f"{path} is missing: start the embedded stack ('platsync up') to generate the "
                                  "broker users, or set broker_username and broker_password") from None
    except (OSError, ValueError) as exc:
        raise BrokerSecurityError(f"{path} is unreadable: {exc}") from None
    if not isinstance(users, dict):
        raise BrokerSecurityError(f"{path}: expected a JSON object of user -> password")
    return {str(k): str(v) for k, v in users.items()}


def credentials(settings: Settings, principal: str = OPERATOR) -> tuple[str, str]:
    """(user, password) of ``principal`` for SASL."""
    user = principal_user(settings, principal)
    if settings.broker_username:
        return user, settings.broker_password
    password = generated_users(settings).get(user)
    if password is None:
        raise BrokerSecurityError(f"no generated password for Kafka user {user!r} in {users_file(settings)}; "
                                  "restart the stack ('platsync down' then 'platsync up') to add it")
    return user, password


def _checked_ca(settings: Settings) -> Path:
    path = ca_file(settings)
    if not path.is_file():
        hint = "set broker_ca_file to the CA that signed the broker certificate" if settings.broker_ca_file \
            else "start the embedded stack ('platsync up') to generate it, or set broker_ca_file"
        raise BrokerSecurityError(f"broker CA file {path} does not exist: {hint}")
    return path


def client_config(settings: Settings, client_id: str | None = None, principal: str = OPERATOR) -> dict[str, Any]:
    """confluent-kafka connection settings: bootstrap servers, reconnect back-off, log level, TLS, SASL
    (and ``client.id`` if given).

    ``principal`` names the process (``capture-local``, ``worker-local_to_remote``, ``mode-remote``,
    ``operator``): its own user on the embedded stack with SASL.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.broker_bootstrap,
        "reconnect.backoff.ms": settings.broker_reconnect_backoff_ms,
        "reconnect.backoff.max.ms": settings.broker_reconnect_backoff_max_ms,
        # Connection attempts and disconnects are informational lines (%6) of each attempt: during a
        # cut they flooded the logs (issue 13). Warnings and errors stay; the engine's own code logs a
        # cut once and then a periodic summary.
        "log_level": 4,
    }
    if client_id is not None:
        config["client.id"] = client_id
    protocol = settings.broker_security_protocol
    if protocol == "plaintext":
        return config
    config["security.protocol"] = PROTOCOLS[protocol]
    config["ssl.ca.location"] = str(_checked_ca(settings))
    config["ssl.endpoint.identification.algorithm"] = "https"
    if protocol == "sasl_ssl":
        user, password = credentials(settings, principal)
        config.update({"sasl.mechanisms": settings.broker_sasl_mechanism, "sasl.username": user,
                       "sasl.password": password})
    return config


def client_ssl_context(settings: Settings) -> ssl.SSLContext:
    """A TLS client context trusting the broker CA, with host name verification (Faust/aiokafka)."""
    return ssl.create_default_context(cafile=str(_checked_ca(settings)))


def faust_broker_options(settings: Settings, principal: str = OPERATOR) -> dict[str, Any]:
    """``faust.App`` keyword arguments for the broker connection (``broker`` plus credentials)."""
    import faust

    options: dict[str, Any] = {"broker": f"kafka://{settings.broker_bootstrap}"}
    protocol = settings.broker_security_protocol
    if protocol == "ssl":
        options["broker_credentials"] = faust.SSLCredentials(context=client_ssl_context(settings))
    elif protocol == "sasl_ssl":
        user, password = credentials(settings, principal)
        options["broker_credentials"] = faust.SASLCredentials(
            username=user, password=password, ssl_context=client_ssl_context(settings),
            mechanism=settings.broker_sasl_mechanism)
    return options
