"""Share changes, subscriptions and what every node is entitled to hold (issue 15), for the randomized network run.

The operations are the author's share changes (PRV_DOC_007) and a hospital's subscriptions (through its API:
PLAT_SUB_001/002). After quiescence :func:`check_entitlements` checks, against the home links' converged stores:

- the cloud's shared store holds exactly the approved documents that are shared, each in its current state
  (deleted ones as deleted), and nothing of a private or unapproved one;
- every hospital's ``fructos_subscribed`` holds exactly the live documents of that store whose patient it
  subscribes to and whose home is another institution, each in the same state;
- the patient index lists, per server (the cloud, the region), exactly the documents that server holds live.
"""

from __future__ import annotations

import random
import time
from typing import Any

import psycopg

from connectors.reference_api.errors import ApiError
from connectors.reference_api.service import ReferenceApi
from infra.local.network import Network
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.e2e.network.conftest import HOSPITALS, REGION
from tests.e2e.test_convergence_random import Run, live_documents, versions

#: (version, content_hash, deleted, updated_at) of a record: its state.
STATE = "version, content_hash, deleted, updated_at"


def share_call(run: Run, link: Settings, rng: random.Random) -> None:
    """The author (``dr``, who registers every document of the workload) flips a random document's share state."""
    side = rng.choice(("local", "remote"))
    docs = live_documents(link, side)
    if not docs:
        run.log(f"{side:6} PRV_DOC_007 share: no live document")
        return
    state = rng.choice(("shared", "private"))
    try:
        with ReferenceApi(link, side) as api:
            result = api.call("PRV_DOC_007", {"documents": [{"id": rng.choice(docs), "share_state": state,
                                                             "signed_by": "dr"}]})
    except ApiError as exc:  # deleted meanwhile: refused, nothing written
        run.log(f"{side:6} PRV_DOC_007 share {state} refused: {exc}")
        return
    for key, version in versions(link, side, result["written"]).items():
        if version >= run.acked.get(key, (0, ""))[0]:
            run.acked[key] = (version, side)
    run.log(f"{side:6} PRV_DOC_007 share {state} ok")


def patients_of(link: Settings) -> list[str]:
    """The hospital's patients with documents, those with an approved one first (the ones worth subscribing to)."""
    with psycopg.connect(libpq_dsn(link, "local", "meta")) as conn:
        return [r[0] for r in conn.execute("SELECT patient_id FROM documents GROUP BY 1 "
                                           "ORDER BY bool_or(status = 'approved') DESC, 1")]


def subscription_call(run: Run, network: Network, rng: random.Random, subscribe_only: bool = False) -> None:
    """A hospital subscribes to (or unsubscribes from) a patient of the other institution, through its API;
    mostly one with an approved document."""
    hospital, other = rng.sample(HOSPITALS, 2)
    patients = patients_of(network.link(other))
    if not patients:
        return
    patients = patients[:3] if rng.random() < 0.7 else patients
    api_id = "PLAT_SUB_001" if subscribe_only else rng.choices(("PLAT_SUB_001", "PLAT_SUB_002"), weights=(3, 1))[0]
    with ReferenceApi(network.link(hospital), "local") as api:
        try:
            api.call(api_id, {"patient_id": rng.choice(patients), "requested_by": "dr"})
        except ApiError as exc:  # the cloud's database killed at that moment: nothing recorded
            run.log(f"[{hospital}] {api_id} refused: {exc}")
            return
    run.log(f"[{hospital}] {api_id} ok")


def _rows(link: Settings, node: str, database: str, where: str = "TRUE") -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(libpq_dsn(link, node, database)) as conn:
        return {str(r[0]): tuple(r[1:]) for r in conn.execute(
            f"SELECT id, {STATE}, patient_id, approved, shared FROM signed_records "
            f"WHERE entity = 'document' AND {where}")}


def entitled(network: Network) -> dict[str, Any]:
    """What each node must hold, from the home links' (converged) own stores and the subscriptions."""
    own = {h: _rows(network.link(h), "local", "fructos_own") for h in HOSPITALS}
    home = {record: h for h, rows in own.items() for record in rows}
    shared = {record: row[:4] for rows in own.values() for record, row in rows.items() if row[5] and row[6]}
    patient = {record: row[4] for rows in own.values() for record, row in rows.items()}
    with psycopg.connect(libpq_dsn(network.settings, "remote", "sharing")) as conn:
        subscribed = {h: {r[0] for r in conn.execute("SELECT patient_id FROM subscriptions WHERE node = %s", (h,))}
                      for h in HOSPITALS}
    live = {record for record, state in shared.items() if not state[2]}
    copies = {h: {r: shared[r] for r in live if patient[r] in subscribed[h] and home[r] != h} for h in HOSPITALS}
    return {"shared": shared, "copies": copies, "live": live}


def held(network: Network) -> dict[str, Any]:
    """What each node holds: the shared stores, the subscribers' copies, the index's entries per server."""
    link = network.link(HOSPITALS[0])
    root = network.topology.root.id
    found: dict[str, Any] = {
        "shared": {r: row[:4] for r, row in _rows(link, "remote", "fructos_patient").items()},
        "region": {r: row[:4] for r, row in _rows(link, REGION, "fructos_patient").items()},
        "copies": {h: {r: row[:4] for r, row in _rows(network.link(h), "local", "fructos_subscribed").items()}
                   for h in HOSPITALS}}
    with psycopg.connect(libpq_dsn(network.settings, "remote", "patient_index")) as conn:
        entries = conn.execute("SELECT server, record_id FROM index_entries WHERE present").fetchall()
    found["index"] = {server: {r for s, r in entries if s == server} for server in (root, REGION)}
    return found


def check_entitlements(network: Network, timeout_s: float = 180) -> str:
    """Wait (the fan-out, subscribers, declarers and indexer run after the home links) until every node holds
    exactly what it is entitled to; a precise assertion error at the deadline. Returns a one-line summary."""
    root = network.topology.root.id
    deadline = time.monotonic() + timeout_s
    while True:
        want, have = entitled(network), held(network)
        problems = []
        if have["shared"] != want["shared"]:
            problems.append(f"the cloud's shared store differs: {_diff(have['shared'], want['shared'])}")
        if have["region"] != have["shared"]:
            problems.append(f"the region differs from the cloud: {_diff(have['region'], have['shared'])}")
        for h in HOSPITALS:
            if have["copies"][h] != want["copies"][h]:
                problems.append(f"{h}'s subscribed copies differ: {_diff(have['copies'][h], want['copies'][h])}")
        live_region = {r for r, state in have["region"].items() if not state[2]}
        for server, expected in ((root, want["live"]), (REGION, live_region)):
            if have["index"][server] != expected:
                problems.append(f"the index of {server} differs: extra {sorted(have['index'][server] - expected)[:3]}"
                                f", missing {sorted(expected - have['index'][server])[:3]}")
        if not problems:
            copies = sum(len(c) for c in want["copies"].values())
            return (f"{len(want['shared'])} shared documents ({len(want['live'])} live), {copies} subscribed "
                    f"copies, index of {root} and {REGION} exact")
        assert time.monotonic() < deadline, "; ".join(problems)
        time.sleep(2)


def _diff(have: dict[str, Any], want: dict[str, Any]) -> str:
    extra = sorted(set(have) - set(want))[:3]
    missing = sorted(set(want) - set(have))[:3]
    changed = [(k, have[k], want[k]) for k in sorted(set(have) & set(want)) if have[k] != want[k]][:2]
    return f"extra {extra}, missing {missing}, different {changed}"
