"""What every store shared beyond its institution must hold after quiescence (the randomized network run).

Entitlement, from the home stores (docs/sharing.md): the cloud's shared store holds, as a live row, exactly
the documents that are approved, shared and not deleted in their home institution's cloud stores, at the
home's version and content; the regional server holds what the cloud's shared store holds; a subscriber
holds exactly the live shared documents of the patients it subscribes to, from every other institution.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import psycopg

from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

#: A document's state as the checks compare it: (version, content_hash).
DocState = tuple[int, str]


def _documents(settings: Settings, side: str, store: str, where: str) -> dict[str, tuple[str, DocState]]:
    """record id -> (patient, (version, content_hash)) of the document records of one store."""
    with psycopg.connect(libpq_dsn(settings, side, store)) as conn:
        return {str(r[0]): (str(r[1]), (int(r[2]), str(r[3]))) for r in conn.execute(
            "SELECT id, patient_id, version, content_hash FROM signed_records "  # noqa: S608
            f"WHERE entity = 'document' AND {where}")}


def entitled_shared(links: Mapping[str, Settings]) -> dict[str, tuple[str, str, DocState]]:
    """record id -> (home, patient, state) of every document a shared store must hold live."""
    found: dict[str, tuple[str, str, DocState]] = {}
    for home, link in links.items():
        for record, (patient, state) in _documents(link, "remote", "fructos_own",
                                                   "approved AND shared AND NOT deleted").items():
            found[record] = (home, patient, state)
    return found


def live_shared(link: Settings, node: str) -> dict[str, DocState]:
    """record id -> state of the live documents in ``node``'s shared store (the cloud's or a region's)."""
    return {r: s for r, (_p, s) in _documents(link, node, "fructos_patient", "NOT deleted").items()}


def subscribed_copies(link: Settings) -> dict[str, DocState]:
    """record id -> state of the live copies in a hospital's ``fructos_subscribed``."""
    return {r: s for r, (_p, s) in _documents(link, "local", "fructos_subscribed", "NOT deleted").items()}


def _diff(held: Mapping[str, DocState], expected: Mapping[str, DocState]) -> str:
    extra = sorted(held.keys() - expected.keys())
    missing = sorted(expected.keys() - held.keys())
    stale = sorted(r for r in held.keys() & expected.keys() if held[r] != expected[r])
    return (f"extra {extra[:5]}, missing {missing[:5]}, "
            f"stale {[(r, held[r], expected[r]) for r in stale[:5]]}")


def check_entitlements(links: Mapping[str, Settings], region: str,
                       subscriptions: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """Assert the module docstring's entitlements; the numbers of live shared documents and of subscribed
    copies checked."""
    entitled = entitled_shared(links)
    expected = {r: state for r, (_h, _p, state) in entitled.items()}
    any_link = next(iter(links.values()))
    cloud = live_shared(any_link, "remote")
    assert cloud == expected, f"the cloud's shared store is not what the homes share: {_diff(cloud, expected)}"
    regional = live_shared(any_link, region)
    assert regional == expected, f"{region} is not what the homes share: {_diff(regional, expected)}"
    wanted = set(subscriptions)
    copies = 0
    for node, link in links.items():
        patients = {p for n, p in wanted if n == node}
        owed = {r: state for r, (home, patient, state) in entitled.items() if home != node and patient in patients}
        held = subscribed_copies(link)
        assert held == owed, f"{node}'s subscribed copies ({sorted(patients)}) are wrong: {_diff(held, owed)}"
        copies += len(held)
    return len(expected), copies


def wait_entitled(links: Mapping[str, Settings], region: str, subscriptions: Iterable[tuple[str, str]],
                  timeout_s: float = 120) -> tuple[int, int]:
    """:func:`check_entitlements` once the fan-out and the subscribers have caught up (they run beside the
    home links that ``wait_synced`` waits for): retried until it holds or ``timeout_s`` passed."""
    wanted = set(subscriptions)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check_entitlements(links, region, wanted)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
