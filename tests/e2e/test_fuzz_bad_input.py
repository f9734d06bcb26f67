"""Fuzzing every route's consumer with generated bad input, mixed with good input, on the real stack;
and fuzzing every reference API's payload with bad text and foreign numbers (refused, never echoed).

Every route's source topics get a seeded variety of bad messages (random bytes, empty and null values,
truncated and padded events, another contract's records, events of unknown APIs, of undeclared
source stores, of the other side, rows a store refuses, signed records whose hash does not match their
content, an oversized message from a foreign producer, change batches mixing good and bad elements,
corrupt batches) interleaved with good changes; the mode servers' heartbeat topic gets garbage too.
Asserted: no worker restarted or stopped, every bad input is in the route's dead-letter topic with its
own bytes and the expected error kind, every good change was applied, and both mode servers still
hear their real peer. ``PLATSYNC_FUZZ_SEED`` reproduces a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import time
import urllib.request
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from confluent_kafka import Producer

from connectors.reference_api.errors import PayloadError
from connectors.reference_api.service import ReferenceApi
from connectors.stores.serials import DOCUMENT_NUMBER_RANGES, PATIENT_NUMBER_RANGES
from infra.local.process import read_pid
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.core.codec import DecodeError, MessageCodec, encode
from streams.core.model import ROUTES, ChangeEvent
from streams.core.modes import encode_heartbeat, heartbeat_record, heartbeat_topic
from streams.ops.dlq import read_dead_letters, read_topic_records
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from tests.support.cleanup import mirror_rows

pytestmark = pytest.mark.e2e
SEED = int(os.environ.get("PLATSYNC_FUZZ_SEED", "20261202"))
BAD_PER_ROUTE = 120
GOOD_PER_ROUTE = 40


@dataclass
class Plan:
    """What was produced to one route, and what must come of it."""

    messages: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)  # topic, key, value
    bad: list[tuple[bytes, bytes | None, str]] = field(default_factory=list)  # key, original value, kind
    good_rows: dict[tuple[str, str], dict] = field(default_factory=dict)  # (store, id) -> row


def _templates(s: Settings, side: str, tag: str, codec: MessageCodec) -> dict[str, ChangeEvent]:
    """A real captured staff insert (meta) and signed-record insert (fructos_own) of ``side``."""
    with ReferenceApi(s, side) as api:
        staff = api.call("PRV_STF_001", {"staff_code": f"fz-{tag}", "display_name": "雛形", "role": "clerk"})
        doc = api.call("PRV_DOC_006", {"documents": [{"patient_id": f"p-{tag}", "doc_type": "note", "title": "t",
                                                      "media_type": "text/plain", "content_text": "雛形",
                                                      "signed_by": "dr"}]})
    wanted = {"meta": staff["written"]["meta"]["staff"][0],
              "fructos_own": doc["written"]["fructos_own"]["signed_records"][0]}
    found: dict[str, ChangeEvent] = {}
    for store, key in wanted.items():
        for _p, _o, _k, value in read_topic_records(s, s.topic(side, store), 60):
            try:
                for event in codec.decode_changes(value):
                    if event.key == key and event.op == "c":
                        found[store] = event
            except DecodeError:
                continue
    assert set(found) == {"meta", "fructos_own"}, found
    return found


def _good(rng: random.Random, template: ChangeEvent, n: int) -> ChangeEvent:
    new_id = f"fuzz-good-{uuid.uuid4().hex}"
    row = dict(template.row or {}, id=new_id)
    if template.table == "staff":
        row.update(staff_code=f"fz-{n}", display_name=f"良 {rng.random()}")
    else:
        content = os.urandom(rng.randint(0, 3000))
        row.update(content=content, content_hash=hashlib.sha256(content).hexdigest())
    return dataclasses.replace(template, event_id=f"{template.event_id}:fz{n}", key=new_id, row=row)


def _bad_event(rng: random.Random, t: dict[str, ChangeEvent], other_side: str, n: int) -> tuple[ChangeEvent, str]:
    base = _good(rng, t[rng.choice(["meta", "fructos_own"])], n)
    choice = rng.randrange(6)
    if choice == 0:
        return dataclasses.replace(base, api_id=rng.choice([None, f"PRV_ZZZ_{n:03d}", "", "prv_stf_001x"])), \
            "unknown_api"
    if choice == 1 and base.table == "signed_records":
        return dataclasses.replace(base, api_id="PRV_STF_001"), "undeclared_source"
    if choice == 2:
        return dataclasses.replace(base, source_side=other_side), "wrong_route"
    if choice == 3 and base.table == "staff":
        return dataclasses.replace(base, row={**(base.row or {}), "staff_code": None}), "sink_rejected"
    if choice == 3:
        return dataclasses.replace(base, row={**(base.row or {}), "content_hash": "0" * 64}), "sink_rejected"
    return dataclasses.replace(base, api_id=f"PRV_FZ_{n}"), "unknown_api"


def _garbage(rng: random.Random, valid: bytes) -> bytes | None:
    kind = rng.randrange(7)
    if kind == 0:
        return os.urandom(rng.randint(0, 400))
    if kind == 1:
        return rng.choice([b"", None])
    if kind == 2:
        return valid[:rng.randint(1, len(valid) - 1)]  # truncated
    if kind == 3:
        return valid + os.urandom(rng.randint(1, 8))  # trailing bytes
    if kind == 4:
        return valid[:1] + os.urandom(8) + valid[9:]  # another contract version's fingerprint
    if kind == 5:
        return encode("dead_letter", {"route": "x", "source_topic": "t", "source_partition": 0, "source_offset": 0,
                                      "original_key": None, "original_value": None, "error_kind": "k", "error": "e",
                                      "hint": "h", "failed_ts_ms": 0})
    return b"\x00" * rng.randint(9, 64)


def _plan_route(rng: random.Random, s: Settings, route: str, templates: dict[str, ChangeEvent],
                codec: MessageCodec) -> Plan:
    source, target = ROUTES[route]
    plan = Plan()
    n = 0

    def good(store: str, into: list[tuple[str, str]] | None = None) -> bytes:
        nonlocal n
        n += 1
        event = _good(rng, templates[store], n)
        plan.good_rows[(store, event.key)] = dict(event.row or {})
        if into is not None:
            into.append((store, event.key))
        return codec.encode_change(event)

    def bad_event() -> tuple[bytes, str]:
        nonlocal n
        n += 1
        event, kind = _bad_event(rng, templates, target, n)
        return codec.encode_change(event), kind

    bad_budget, good_budget = BAD_PER_ROUTE, GOOD_PER_ROUTE
    while bad_budget > 0 or good_budget > 0:
        store = rng.choice(["meta", "fructos_own"])
        topic = s.topic(source, store)
        key = f"fuzz:{route}:{len(plan.messages)}".encode()
        shape = rng.randrange(5)
        if good_budget > 0 and (shape == 0 or bad_budget <= 0):
            plan.messages.append((topic, key, good(store)))
            good_budget -= 1
        elif shape in (1, 2):
            value = _garbage(rng, good(store))
            plan.good_rows.popitem()  # its template bytes were only the raw material
            plan.messages.append((topic, key, value))
            plan.bad.append((key, value, "decode"))
            bad_budget -= 1
        elif shape == 3:
            value, kind = bad_event()
            plan.messages.append((topic, key, value))
            plan.bad.append((key, value, kind))
            bad_budget -= 1
        else:  # a change batch: good and bad elements, or a corrupt one
            elements: list[bytes] = []
            goods: list[tuple[str, str]] = []
            for _ in range(rng.randint(2, 6)):
                if rng.random() < 0.5 and good_budget > 0:
                    elements.append(good(store, goods))
                    good_budget -= 1
                else:
                    value, kind = bad_event() if rng.random() < 0.6 else (b"\x50" + os.urandom(20), "decode")
                    elements.append(value)
                    plan.bad.append((key, value, kind))
                    bad_budget -= 1
            batch = codec.encode_change_batch(elements)
            if rng.random() < 0.15:  # corrupt: the batch is dead-lettered whole, none of it applied
                batch = batch[:-rng.randint(1, 5)]
                plan.bad = [b for b in plan.bad if b[0] != key] + [(key, batch, "decode")]
                for row_key in goods:
                    del plan.good_rows[row_key]
            plan.messages.append((topic, key, batch))
    # A message above the consumers' fetch size from a foreign producer (the capture never sends one).
    big_key = f"fuzz:{route}:oversized".encode()
    big = os.urandom(s.kafka_message_max_bytes + 300_000)
    plan.messages.insert(len(plan.messages) // 2, (s.topic(source, "meta"), big_key, big))
    plan.bad.append((big_key, big, "decode"))
    return plan


def _mode_status(s: Settings, side: str) -> dict:
    with urllib.request.urlopen(f"http://{s.host}:{s.mode_port(side)}/status", timeout=5) as response:
        return json.loads(response.read())


def test_bad_input_at_every_consumer_is_dead_lettered_and_good_input_applied(stack: Stack, codec: MessageCodec) -> None:
    s = stack.settings
    rng = random.Random(SEED)
    tag = uuid.uuid4().hex[:8]
    templates = {side: _templates(s, side, f"{side}-{tag}", codec) for side in ("local", "remote")}
    assert wait_synced(s, 90) == []
    workers = {route: read_pid(s.data_dir, f"worker-{route}") for route in ROUTES}
    assert all(workers.values()), workers
    plans = {route: _plan_route(rng, s, route, templates[ROUTES[route][0]], codec) for route in ROUTES}
    for plan in plans.values():  # the generator covers every kind of bad input, and enough good input
        assert {kind for _k, _v, kind in plan.bad} == {"decode", "unknown_api", "undeclared_source", "wrong_route",
                                                       "sink_rejected"}
        assert len(plan.bad) > BAD_PER_ROUTE // 2 and len(plan.good_rows) > GOOD_PER_ROUTE // 2

    producer = Producer({**client_config(s, "platsync-fuzz"),
                         "message.max.bytes": 2 * s.kafka_message_max_bytes + 1_000_000, "linger.ms": 5})
    for route in ROUTES:
        for topic, key, value in plans[route].messages:
            producer.produce(topic, key=key, value=value)
    # The mode servers' heartbeat consumers: garbage is skipped (heartbeats are not data: nothing to keep).
    for _ in range(60):
        producer.produce(heartbeat_topic(s), value=_garbage(rng, encode_heartbeat(heartbeat_record(
            "local", int(time.time() * 1000), "normal", "fuzz"))))
    assert producer.flush(60) == 0
    garbage_sent_ms = int(time.time() * 1000)

    assert wait_synced(s, 240) == [], f"seed {SEED}"
    assert {route: read_pid(s.data_dir, f"worker-{route}") for route in ROUTES} == workers, \
        "a worker restarted or stopped"
    for side in ("local", "remote"):  # still hearing the real peer after the garbage
        deadline = time.monotonic() + 15
        while (status := _mode_status(s, side))["peer_last_seen_ts_ms"] <= garbage_sent_ms:
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["peer"]["side"] != side and status["peer"]["incarnation"] != "fuzz"
    for route, plan in plans.items():
        letters = [d.record for d in read_dead_letters(s, [route], timeout_s=60)
                   if (d.record["original_key"] or b"").startswith(f"fuzz:{route}:".encode())]
        got = {(d["original_key"], d["original_value"], d["error_kind"]) for d in letters}
        missing = [(k, None if v is None else len(v), kind) for k, v, kind in plan.bad if (k, v, kind) not in got]
        assert not missing, f"seed {SEED}: {len(missing)} bad inputs of {route} not dead-lettered: {missing[:5]}"
        unexpected = got - set(plan.bad)
        assert not unexpected, f"seed {SEED}: {route} dead-lettered what was good: {list(unexpected)[:3]}"
        assert all(d["hint"] and d["error"] for d in letters)
        target = ROUTES[route][1]
        for store in ("meta", "fructos_own"):
            wanted = {row_id: row for (st, row_id), row in plan.good_rows.items() if st == store}
            table = "staff" if store == "meta" else "signed_records"
            column = "staff_code" if store == "meta" else "content_hash"
            with psycopg.connect(libpq_dsn(s, target, store)) as conn:
                found = dict(conn.execute(f"SELECT id, {column} FROM {table} WHERE id = ANY(%s)",
                                          (list(wanted),)).fetchall())
            assert found == {row_id: row[column] for row_id, row in wanted.items()}, f"seed {SEED}: {route}/{store}"
            # Injected straight into the topic, these rows exist on the target side only: give the source
            # side the same rows, so later tests comparing both sides or replaying the topics find them converged.
            assert mirror_rows(s, target, ROUTES[route][0], store, table, wanted) == len(wanted)


# -- the reference APIs' payloads (issue 13): NUL characters, unpaired surrogates, control characters,
# over-long values in every text field, given numbers from the other side's range -------------------------

API_FUZZ_CALLS = 160
MARKER = "PII-山田花子"
_CONTENT_FIELDS = ("content_text", "content_base64")


def _valid_payloads(side: str, doc_ids: list[str], tag: str) -> dict[str, dict]:
    new_doc = {"patient_id": f"p-{tag}", "doc_type": "note", "title": "題", "media_type": "text/plain",
               "content_text": "本文", "signed_by": "dr", "document_number": f"SLIP-{tag}"}
    return {
        "PRV_USR_001": {"login_id": f"u-{tag}", "display_name": "山田", "institution_code": "131", "profile": "内科"},
        "PRV_PAT_001": {"family_name": "山田", "given_name": "太郎", "birth_date": "1980-01-02", "sex": "male",
                        "institution_code": "131", "patient_number": f"H-{tag}"},
        "PRV_STF_001": {"staff_code": f"S-{tag}", "display_name": "佐藤", "role": "nurse"},
        "PRV_STF_003": {"staff_code": f"S-{tag}", "display_name": "佐藤", "role": "nurse", "username": f"fz-{tag}",
                        "password": "pw-秘密", "email": f"fz-{tag}@example.jp", "family_name": "佐藤",
                        "given_name": "花子"},
        "PRV_ATH_001": {"username": f"fz-{tag}", "password": "pw", "required_actions": ["UPDATE_PASSWORD"]},
        "PRV_DOC_006": {"documents": [new_doc]},
        "PRV_DOC_007": {"documents": [{"id": doc_ids[0], "title": "改", "doc_type": "x", "media_type": "text/plain",
                                       "content_text": "新", "signed_by": "dr"}]},
        "PRV_DOC_008": {"ids": [doc_ids[1]]},
        "PRV_DOC_009": {"documents": [{"id": doc_ids[2], "approved_by": "chief"}]},
    }


def _text_paths(node: object, path: str = "") -> list[str]:
    """JSON paths of every string in ``node`` except document content (bytes, binary-safe)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() if k not in _CONTENT_FIELDS
                for p in _text_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _text_paths(v, f"{path}[{i}]")]
    return [path] if isinstance(node, str) else []


def _set(node: dict, path: str, value: str) -> None:
    steps = [int(s[1:-1]) if s.startswith("[") else s for s in re.findall(r"\[\d+\]|[^.\[\]]+", path)]
    target = node
    for step in steps[:-1]:
        target = target[step]
    target[steps[-1]] = value


def test_bad_text_and_foreign_numbers_in_every_api_payload_are_refused_without_echo(stack: Stack) -> None:
    s = stack.settings
    rng = random.Random(SEED)
    tag = uuid.uuid4().hex[:8]
    doc_ids: dict[str, list[str]] = {}
    for side in ("local", "remote"):
        with ReferenceApi(s, side) as api:
            doc_ids[side] = api.call("PRV_DOC_006", {"documents": [
                {"patient_id": f"p-{tag}", "doc_type": "note", "title": f"t{i}", "media_type": "text/plain",
                 "content_text": "x", "signed_by": "dr"} for i in range(3)]})["written"]["meta"]["documents"]
    mutations = {
        "nul": lambda v: MARKER + "\u0000" + v, "surrogate": lambda v: MARKER + "\ud83d" + v,
        "control": lambda v: MARKER + "\u0007" + v, "over_long": lambda v: MARKER + "長" * 5000,
    }
    expected = {"nul": "NUL character", "surrogate": "unpaired UTF-16 surrogate", "control": "control character",
                "over_long": "expected at most"}
    call_ids: list[str] = []
    seen: set[tuple[str, str]] = set()
    apis = {side: ReferenceApi(s, side) for side in ("local", "remote")}
    try:
        for n in range(API_FUZZ_CALLS):
            side = rng.choice(["local", "remote"])
            payloads = _valid_payloads(side, doc_ids[side], f"{tag}-{n}")
            api_id = rng.choice(sorted(payloads))
            payload = payloads[api_id]
            numbered = {"PRV_PAT_001": "patient_number", "PRV_DOC_006": "documents[0].document_number"}
            if api_id in numbered and rng.random() < 0.3:  # a number of the other side's range
                path, kind = numbered[api_id], "foreign_number"
                other = "remote" if side == "local" else "local"
                ranges = (PATIENT_NUMBER_RANGES if api_id == "PRV_PAT_001" else DOCUMENT_NUMBER_RANGES)[other]
                _set(payload, path, str(rng.randint(*ranges)))
            else:
                path, kind = rng.choice(_text_paths(payload)), rng.choice(sorted(mutations))
                steps = re.findall(r"\[\d+\]|[^.\[\]]+", path)
                value: object = payload
                for step in steps:
                    value = value[int(step[1:-1])] if step.startswith("[") else value[step]  # type: ignore[index]
                _set(payload, path, mutations[kind](str(value)))
            call_id = f"fuzz-api-{tag}-{n}"
            call_ids.append(call_id)
            with pytest.raises(PayloadError) as info:
                apis[side].call(api_id, payload, call_id=call_id)
            err = info.value
            assert (err.api, err.path) == (api_id, path), (SEED, n, api_id, kind, str(err))
            assert (expected.get(kind) or "outside the") in err.expected, (SEED, n, api_id, kind, str(err))
            assert MARKER not in str(err) and "長長" not in str(err) and "\x00" not in str(err)
            seen.add((api_id, kind))
    finally:
        for api in apis.values():
            api.close()
    assert {api_id for api_id, _ in seen} == set(_valid_payloads("local", ["a", "b", "c"], "x")), seen
    assert {kind for _, kind in seen} == {*mutations, "foreign_number"}, seen
    for side in ("local", "remote"):  # nothing written: no transaction of any refused call was committed
        for store in ("meta", "fructos_own"):
            with psycopg.connect(libpq_dsn(s, side, store)) as conn:
                assert conn.execute("SELECT count(*) FROM platsync_txn_marker WHERE call_id = ANY(%s)",
                                    (call_ids,)).fetchone() == (0,), (side, store)
