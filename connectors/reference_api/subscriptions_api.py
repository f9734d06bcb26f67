"""The subscription APIs of a hospital (issue 15, docs/sharing.md "Subscriptions through the API").

Not part of the sync matrix: they write no synced store, only the network's record of what each hospital
asked for (the cloud's ``sharing`` database), which the fan-out acts on. A hospital's API subscribes that
hospital only: the node is the API's own link, never a payload field, so no hospital can subscribe or
unsubscribe another. Every call is audited there with its ``requested_by`` (no PHI is logged).

=================  ================================================  =========================================
``PLAT_SUB_001``   ``{patient_id, requested_by}``                     subscribe the API's hospital to a patient
``PLAT_SUB_002``   ``{patient_id, requested_by}``                     unsubscribe it
``PLAT_SUB_003``   ``{}`` or ``{patient_id}``                          its subscriptions
=================  ================================================  =========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from connectors.reference_api.errors import ApiError
from connectors.reference_api.reader import CODE, JsonObject
from connectors.stores.fanout_state import SHARING_DATABASE, add_subscription, list_subscriptions, remove_subscription
from streams.runtime.connections import dsn
from streams.runtime.credentials import APP
from streams.runtime.settings import Settings

SUBSCRIBE, UNSUBSCRIBE, LIST = "PLAT_SUB_001", "PLAT_SUB_002", "PLAT_SUB_003"
SUBSCRIPTION_APIS: tuple[str, ...] = (SUBSCRIBE, UNSUBSCRIBE, LIST)
CLOUD_SIDE = "remote"


def canonical_subscription_api(api_id: str) -> str | None:
    """``PLAT_SUB_001`` for ``PLAT_SUB_001`` or ``SUB_001``; None if ``api_id`` is no subscription API."""
    canonical = api_id if api_id.startswith("PLAT_") else f"PLAT_{api_id}"
    return canonical if canonical in SUBSCRIPTION_APIS else None


def _parse(api: str, payload: Any) -> tuple[str | None, str | None]:
    """(patient_id, requested_by) of a payload; :class:`PayloadError` naming the path and what was expected."""
    if api == LIST:
        obj = JsonObject(api, "", payload, ("patient_id",))
        return obj.string("patient_id", CODE, required=False), None
    obj = JsonObject(api, "", payload, ("patient_id", "requested_by"))
    return obj.req("patient_id"), obj.req("requested_by")


def _json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


class SubscriptionsApi:
    """The subscription APIs of one hospital of a network, on either side of its home link."""

    def __init__(self, settings: Settings, side: str) -> None:
        if not settings.network_link:
            raise ApiError("subscriptions are between the hospitals of a network: this API serves the default "
                           "two-site stack ('platsync up --topology FILE')")
        self.node, self.side = settings.network_link, side
        # The tenant's API role (docs/security.md: the subscription APIs' grants on ``sharing``).
        self._engine = create_engine(dsn(settings, CLOUD_SIDE, SHARING_DATABASE, APP), pool_size=1, max_overflow=1)

    def call(self, api_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Run a subscription API; :class:`PayloadError` for a malformed payload, :class:`ApiError` if the cloud's
        ``sharing`` database cannot be reached (nothing recorded: call again when the cloud is back)."""
        api = canonical_subscription_api(api_id)
        if api is None:
            raise ApiError(f"unknown API {api_id!r}; known: {', '.join(SUBSCRIPTION_APIS)}")
        patient, requested_by = _parse(api, payload)
        result: dict[str, Any] = {"api": api, "node": self.node, "side": self.side}
        try:
            with self._engine.begin() as conn:
                if api == LIST:
                    rows = [r for r in list_subscriptions(conn, self.node) if patient in (None, r["patient_id"])]
                    return {**result, "subscriptions": [_json(r) for r in rows]}
                assert patient is not None and requested_by is not None
                actor = f"{self.node}:{requested_by}"
                if api == SUBSCRIBE:
                    return {**result, "patient_id": patient, "subscribed": add_subscription(conn, self.node, patient,
                                                                                            actor)}
                return {**result, "patient_id": patient,
                        "unsubscribed": remove_subscription(conn, self.node, patient, actor)}
        except OperationalError as exc:
            raise ApiError(f"{api}: the cloud's {SHARING_DATABASE} database, where subscriptions are kept, cannot be "
                           f"reached from {self.node} ({type(exc).__name__}); nothing was recorded: call again "
                           "when the cloud is reachable") from None

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()
