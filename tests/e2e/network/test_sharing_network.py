"""Share states across the regional network (issue 15, docs/sharing.md; the package's regional topology).

A private document of hospital A reaches A's own stores in the cloud but neither the cloud's shared
patient store nor the regional server's copy; share changes of approved documents, made at the
hospital or in the cloud, withdraw and publish them in both shared stores.
"""

from __future__ import annotations

import uuid

import pytest

from infra.local.network import Network
from tests.e2e.network.conftest import HOSPITALS, REGION
from tests.e2e.network.test_regional import call, rows, synced

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def register(link: object, side: str, tag: str, **extra: str) -> tuple[str, str]:
    """(META document id, signed record id) of one approved document registered on ``side``."""
    written = call(link, side, "PRV_DOC_006", {  # type: ignore[arg-type]
        "patient_id": f"p-{tag}", "doc_type": "referral", "title": tag, "media_type": "text/plain",
        "content_text": f"本文 {tag}", "signed_by": "dr-author", **extra})["written"]
    doc = (str(written["meta"]["documents"][0]), str(written["fructos_own"]["signed_records"][0]))
    call(link, side, "PRV_DOC_009", {"documents": [{"id": doc[0], "approved_by": "dr-chief"}]})  # type: ignore[arg-type]
    return doc


def share(link: object, side: str, doc: tuple[str, str], state: str) -> None:
    call(link, side, "PRV_DOC_007", {"documents": [  # type: ignore[arg-type]
        {"id": doc[0], "share_state": state, "signed_by": "dr-author"}]})


def test_shared_stores_hold_exactly_the_shared_documents_as_states_change(network: Network) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    tag = uuid.uuid4().hex[:8]
    a_shared = register(a, "local", f"as-{tag}")
    a_private = register(a, "local", f"ap-{tag}", share_state="private")
    b_private = register(b, "remote", f"bp-{tag}", share_state="private")  # written in the cloud for B
    b_shared = register(b, "remote", f"bs-{tag}")
    synced(a)
    synced(b)
    records = [d[1] for d in (a_shared, a_private, b_private, b_shared)]

    def held(node: str) -> set[str]:
        return set(rows(network.settings, node, records))

    assert held("remote") == held(REGION) == {a_shared[1], b_shared[1]}

    share(a, "local", a_shared, "private")  # at the hospital
    share(a, "local", a_private, "shared")
    share(b, "remote", b_shared, "private")  # in the cloud
    share(b, "remote", b_private, "shared")
    synced(a)
    synced(b)
    assert held("remote") == held(REGION) == {a_private[1], b_private[1]}
    # What the region holds is the cloud's state, version for version.
    assert rows(network.settings, REGION, records) == rows(network.settings, "remote", records)

    share(a, "remote", a_shared, "shared")  # the author, working in the cloud, publishes it again
    synced(a)
    assert held("remote") == held(REGION) == {a_shared[1], a_private[1], b_private[1]}
