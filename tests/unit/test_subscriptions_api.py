"""The subscription APIs' ids and payloads (connectors/reference_api/subscriptions_api.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.reference_api.errors import ApiError, PayloadError
from connectors.reference_api.subscriptions_api import SubscriptionsApi, _parse, canonical_subscription_api
from infra.local.network import Network
from streams.apply.subscriber import link_feed_topic
from streams.runtime.settings import load_settings
from streams.sharing.feed import feed_topic
from streams.topology.load import load_topology


def test_ids_are_recognised_with_or_without_their_prefix() -> None:
    assert canonical_subscription_api("SUB_001") == canonical_subscription_api("PLAT_SUB_001") == "PLAT_SUB_001"
    assert canonical_subscription_api("PRV_DOC_006") is None and canonical_subscription_api("SUB_009") is None


@pytest.mark.parametrize(("api", "payload", "path", "expected"), [
    ("PLAT_SUB_001", {"requested_by": "dr"}, "patient_id", "missing"),
    ("PLAT_SUB_001", {"patient_id": "p", "requested_by": " "}, "requested_by", "non-empty string"),
    ("PLAT_SUB_002", {"patient_id": 7, "requested_by": "dr"}, "patient_id", "got number"),
    ("PLAT_SUB_001", {"patient_id": "p", "requested_by": "dr", "node": "hosp-a"}, "node", "unexpected key"),
    ("PLAT_SUB_003", {"requested_by": "dr"}, "requested_by", "unexpected key"),
    ("PLAT_SUB_003", [], "$", "expected a JSON object"),
])
def test_a_bad_payload_names_its_path(api: str, payload: Any, path: str, expected: str) -> None:
    with pytest.raises(PayloadError) as caught:
        _parse(api, payload)
    assert caught.value.path == path and expected in caught.value.expected


def test_payloads_give_the_patient_and_who_asks() -> None:
    assert _parse("PLAT_SUB_001", {"patient_id": "p-1", "requested_by": "dr-b"}) == ("p-1", "dr-b")
    assert _parse("PLAT_SUB_003", {}) == (None, None)
    assert _parse("PLAT_SUB_003", {"patient_id": "p-1"}) == ("p-1", None)


def test_the_default_two_site_stack_has_no_subscriptions() -> None:
    with pytest.raises(ApiError, match="between the hospitals of a network"):
        SubscriptionsApi(load_settings(env={}), "local")


def test_a_subscriber_reads_the_feed_the_plan_names_for_its_link(tmp_path: Path) -> None:
    network = Network(load_settings(env={}, data_dir=tmp_path),
                      load_topology(Path(__file__).resolve().parents[2] / "infra" / "topologies" / "regional.toml"))
    for hospital in ("hosp-a", "hosp-b"):
        assert link_feed_topic(network.link(hospital)) == network.plan.feed_topic("platsync", hospital) == \
            feed_topic("platsync", hospital)
