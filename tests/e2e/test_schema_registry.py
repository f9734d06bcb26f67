"""The registry client and the wire codec against a running registry: the stand-in (a real process,
here) and the real Confluent Schema Registry (testcontainers, wherever Docker runs; skipped here).

The same assertions run against both (``registry`` is parametrized), so the stand-in's behaviour is
checked against the real server's wherever that one can run. Subjects carry a random suffix: the
cases share one registry per module.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest

from infra.local.process import free_port
from streams.apply.agent import SCHEMA_REGISTRY, RouteApplier
from streams.core.codec import DecodeError, load_contract
from streams.routing.matrix_model import load_matrix
from streams.runtime.confluent_wire import ConfluentWire, codec_for, header, register_contracts
from streams.runtime.deadletter import DeadLetterWriter, IncomingMessage
from streams.runtime.schema_registry import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    SchemaNotFoundError,
    SchemaRegistryAuthError,
    SchemaRegistryClient,
)
from streams.runtime.settings import load_settings
from tests.support.docker import docker_unavailable_reason
from tests.support.real_kafka import KAFKA_IMAGE, REGISTRY_IMAGE, kafka_and_registry
from tests.support.schema_registry import running_registry_standin
from tests.support.stack import make_data_dir, remove_data_dir

pytestmark = pytest.mark.e2e

def record(name: str, *fields: dict) -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "test.platsync", "fields": list(fields)})


A = {"name": "a", "type": "string"}


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    path = make_data_dir("platsync-registry-")
    yield path
    remove_data_dir(path)


@pytest.fixture(scope="module", params=["standin", "confluent"])
def registry(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[str]:
    """URL of a running registry: the stand-in, or Confluent's server in Docker."""
    if request.param == "standin":
        with running_registry_standin(data_dir, "registry-cases") as url:
            yield url
        return
    reason = docker_unavailable_reason(f"the same cases run against the real Confluent Schema Registry "
                                       f"({REGISTRY_IMAGE} with {KAFKA_IMAGE})")
    if reason is not None:
        pytest.skip(reason)
    with kafka_and_registry() as (_bootstrap, url):
        yield url


def test_register_is_idempotent_and_ids_are_global(registry: str) -> None:
    client = SchemaRegistryClient(registry)
    s1, s2 = f"test.platsync.One{uuid.uuid4().hex}", f"test.platsync.Two{uuid.uuid4().hex}"
    first = client.register(s1, record("One", A))
    assert client.register(s1, record("One", A)) == first
    assert client.versions(s1) == [1]
    assert client.register(s2, record("One", A)) == first  # the same schema under another subject
    assert {s1, s2} <= set(client.subjects())
    fetched = json.loads(client.schema(first))
    assert fetched["name"] == "One" and [f["name"] for f in fetched["fields"]] == ["a"]
    assert client.lookup(s1, record("One", A)) == first
    assert client.version(s1)["id"] == first and client.version(s1, 1)["version"] == 1


def test_not_found_errors_carry_the_registrys_codes(registry: str) -> None:
    client = SchemaRegistryClient(registry)
    with pytest.raises(SchemaNotFoundError) as unknown_id:
        client.schema(987654)
    assert (unknown_id.value.status, unknown_id.value.error_code) == (404, 40403)
    with pytest.raises(SchemaNotFoundError) as unknown_subject:
        client.versions(f"test.platsync.Missing{uuid.uuid4().hex}")
    assert unknown_subject.value.error_code == 40401


def test_compatibility_is_enforced_with_a_409(registry: str) -> None:
    client = SchemaRegistryClient(registry)
    subject = f"test.platsync.Evolving{uuid.uuid4().hex}"
    assert client.set_compatibility("BACKWARD", subject) == "BACKWARD"
    assert client.compatibility(subject) == "BACKWARD"
    assert client.compatibility_problems(subject, record("E", A)) is None  # no subject yet: nothing to break
    v1 = client.register(subject, record("E", A))
    required = record("E", A, {"name": "b", "type": "long"})
    assert client.compatibility_problems(subject, required) is not None
    with pytest.raises(IncompatibleSchemaError) as refused:
        client.register(subject, required)
    assert refused.value.status == 409 and "incompatible" in refused.value.message.lower()
    with_default = record("E", A, {"name": "b", "type": "long", "default": 0})
    assert client.compatibility_problems(subject, with_default) is None
    v2 = client.register(subject, with_default)
    assert v2 != v1 and client.versions(subject) == [1, 2]
    client.set_compatibility("NONE", subject)
    assert client.register(subject, record("E", {"name": "z", "type": "int"})) not in (v1, v2)


def test_invalid_schemas_and_levels_are_422(registry: str) -> None:
    client = SchemaRegistryClient(registry)
    subject = f"test.platsync.Invalid{uuid.uuid4().hex}"
    with pytest.raises(InvalidSchemaError) as invalid:
        client.register(subject, '{"type": "record", "name": "X", "fields": [{"name": "a"}]}')
    assert (invalid.value.status, invalid.value.error_code) == (422, 42201)
    with pytest.raises(InvalidSchemaError) as level:
        client._request("PUT", f"/config/{subject}", {"compatibility": "SIDEWAYS"})
    assert level.value.error_code == 42203


def test_the_project_contracts_register_and_read_an_older_writer(registry: str) -> None:
    client = SchemaRegistryClient(registry)
    ids = register_contracts(client, "BACKWARD")
    assert register_contracts(client, "BACKWARD") == ids  # every process start registers again: same ids
    assert set(ids) == {"change_batch", "change_event", "dead_letter", "heartbeat", "index_declaration",
                        "notification", "subscription_message"}
    assert client.compatibility("jp.plat.sync.ChangeEvent") == "BACKWARD"
    # An older writer: change_event without "before" (it has a default, so BACKWARD accepts it).
    older = json.loads(json.dumps(load_contract("change_event").raw))
    older["fields"] = [f for f in older["fields"] if f["name"] != "before"]
    older_id = client.register("jp.plat.sync.ChangeEvent", json.dumps(older))
    assert older_id != ids["change_event"]
    wire = ConfluentWire(client, ids)  # knows only its own ids: the older one is fetched by id
    record_ = {"event_id": "local.meta:1:0", "source_side": "local", "source_store": "meta", "table": "staff",
               "op": "c", "key": "k", "version": 1, "row": {"id": "k"}, "api_id": "PRV_STF_001", "call_id": None,
               "origin_side": "local", "lsn": 1, "txid": 1, "commit_ts_ms": 1, "captured_ts_ms": 1}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(older), record_)
    event = wire.decode_change(header(older_id) + buf.getvalue())
    assert event.key == "k" and event.before is None
    with pytest.raises(DecodeError, match="unknown to the schema registry"):
        wire.decode_change(header(987654) + buf.getvalue())


def test_basic_auth_is_required_when_configured(data_dir: Path) -> None:
    """Stand-in only: configuring basic auth on Confluent's image needs JAAS files (docs/schema_registry.md)."""
    with running_registry_standin(data_dir, "registry-auth", basic_auth="svc:s3cret") as url:
        with pytest.raises(SchemaRegistryAuthError, match="401.*check schema_registry_user"):
            SchemaRegistryClient(url).subjects()
        with pytest.raises(SchemaRegistryAuthError):
            SchemaRegistryClient(url, "svc", "wrong").subjects()
        assert SchemaRegistryClient(url, "svc", "s3cret").subjects() == []


def test_an_unreachable_registry_is_waited_for_and_nothing_is_dead_lettered(data_dir: Path) -> None:
    """A message with an id the worker has not cached yet arrives while the registry is down: the
    applier retries (the worker's state names the registry) and decodes it once the registry is back."""
    port, state = free_port(), data_dir / "retry-registry.json"
    with running_registry_standin(data_dir, "registry-retry", port=port, state_file=state) as url:
        client = SchemaRegistryClient(url, timeout_s=1.0)
        ids = register_contracts(client, "BACKWARD")
        newer = json.loads(json.dumps(load_contract("change_event").raw))
        newer["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
        newer_id = client.register("jp.plat.sync.ChangeEvent", json.dumps(newer))
    probe = {"event_id": "local.meta:5:0", "source_side": "local", "source_store": "meta", "table": "probe",
             "op": "probe", "key": "probe-1", "version": 0, "row": None, "api_id": None, "call_id": None,
             "origin_side": "local", "lsn": 5, "txid": 5, "commit_ts_ms": 5, "captured_ts_ms": 5, "before": None,
             "note": "from a newer writer"}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(newer), probe)
    message = IncomingMessage("platsync.local.meta", 0, 0, b"probe", header(newer_id) + buf.getvalue())
    codec = ConfluentWire(client, ids).codec()
    settings = load_settings(env={}, broker_port=free_port(), data_dir=data_dir)
    letters = DeadLetterWriter(settings, "local_to_remote", codec=codec)
    recorded: list[dict] = []
    applier = RouteApplier("local_to_remote", load_matrix(), {}, letters, recorded.append,
                           retry_backoff_s=(0.05, 0.2), codec=codec)
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(applier.apply_batch([message])), daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while SCHEMA_REGISTRY not in applier.retrying and time.monotonic() < deadline:
        time.sleep(0.05)
    assert SCHEMA_REGISTRY in applier.retrying and "unreachable" in applier.retrying[SCHEMA_REGISTRY]
    assert worker.is_alive() and not letters._pending
    with running_registry_standin(data_dir, "registry-retry", port=port, state_file=state):
        worker.join(15)
    assert not worker.is_alive() and done
    report = done[0]
    assert (report.events, report.dead_letters) == (1, 0)  # type: ignore[attr-defined]
    assert recorded and recorded[0]["meta"].last_probe_id == "probe-1"
    assert SCHEMA_REGISTRY not in applier.retrying


def test_a_process_refuses_to_start_when_the_registry_rejects_a_contract(data_dir: Path) -> None:
    """The registry's latest Heartbeat lacks "mode", which ours requires: under BACKWARD our contract
    cannot read that version's data, so codec_for (called by every process at start) refuses."""
    with running_registry_standin(data_dir, "registry-refuse") as url:
        client = SchemaRegistryClient(url)
        older = json.loads(json.dumps(load_contract("heartbeat").raw))
        older["fields"] = [f for f in older["fields"] if f["name"] in ("side", "sent_ts_ms")]
        client.set_compatibility("NONE", "jp.plat.sync.Heartbeat")
        client.register("jp.plat.sync.Heartbeat", json.dumps(older))
        settings = load_settings(env={}, schema_registry_url=url, data_dir=data_dir)
        with pytest.raises(IncompatibleSchemaError) as refused:
            codec_for(settings)
        text = str(refused.value)
        assert "refuses schemas/heartbeat.avsc" in text and "jp.plat.sync.Heartbeat" in text
        assert "compatibility BACKWARD" in text and "schema_registry_compatibility" in text
        assert refused.value.status == 409 and "incompatible" in refused.value.message
        assert client.versions("jp.plat.sync.Heartbeat") == [1]  # nothing registered by the refused start
        assert codec_for(dataclasses.replace(settings, schema_registry_compatibility="NONE")).name.startswith(
            "confluent:")
