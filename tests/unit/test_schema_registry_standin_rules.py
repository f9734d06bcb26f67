"""The stand-in registry's rules (infra/local/schema_registry_standin/registry.py), without HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.local.schema_registry_standin.registry import Registry, RegistryError


def record(*fields: dict, name: str = "R") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "t", "fields": list(fields)})


A = {"name": "a", "type": "string"}
B_DEFAULT = {"name": "b", "type": "long", "default": 0}
B_REQUIRED = {"name": "b", "type": "long"}


def error_of(call: object, *args: object) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_ids_are_global_and_stable_and_versions_per_subject() -> None:
    reg = Registry()
    first = reg.register("s1", record(A))
    assert reg.register("s1", json.dumps(json.loads(record(A)), indent=2)) == first  # same schema, same id
    assert reg.versions("s1") == [1]
    assert reg.register("s2", record(A)) == first and reg.versions("s2") == [1]
    second = reg.register("s1", record(A, B_DEFAULT))
    assert second == first + 1 and reg.versions("s1") == [1, 2]
    assert reg.version("s1", "latest")["id"] == second and reg.version("s1", "1")["id"] == first
    assert json.loads(reg.schema(str(second))["schema"])["fields"][1]["name"] == "b"


def test_backward_refuses_a_new_required_field_with_409() -> None:
    reg = Registry()
    reg.register("s", record(A))
    err = error_of(reg.register, "s", record(A, B_REQUIRED))
    assert (err.status, err.error_code) == (409, 409)
    assert err.message.startswith('Schema being registered is incompatible with an earlier schema for subject "s"')
    assert "BACKWARD" in err.message and reg.versions("s") == [1]
    assert reg.check("s", "latest", record(A, B_REQUIRED)) and not reg.check("s", "latest", record(A, B_DEFAULT))


def test_forward_refuses_what_the_latest_reader_cannot_read() -> None:
    reg = Registry(default_level="FORWARD")
    reg.register("f", record(A))
    reg.register("f", record(A, B_REQUIRED))  # the old reader ignores the new field
    assert error_of(reg.register, "f", record(B_REQUIRED)).status == 409  # the old reader needs "a"


def test_full_needs_both_directions_and_none_checks_nothing() -> None:
    full = Registry(default_level="FULL")
    full.register("x", record(A))
    assert error_of(full.register, "x", record(A, B_REQUIRED)).status == 409
    full.register("x", record(A, B_DEFAULT))
    none = Registry(default_level="NONE")
    none.register("n", record(A))
    none.register("n", record({"name": "z", "type": "int"}))
    assert none.versions("n") == [1, 2]


def test_transitive_levels_check_every_version() -> None:
    v1, v2, v3 = record(A), record(), record({"name": "a", "type": "long", "default": 0})
    for level, accepted in (("BACKWARD", True), ("BACKWARD_TRANSITIVE", False)):
        reg = Registry(default_level=level)
        reg.register("t", v1)
        reg.register("t", v2)  # reads v1's data (ignores "a")
        if accepted:  # v3 reads v2's data (default for "a"); v1's "a" is a string, not a long
            reg.register("t", v3)
        else:
            assert error_of(reg.register, "t", v3).status == 409


def test_subject_level_overrides_the_global_level() -> None:
    reg = Registry()
    reg.register("s", record(A))
    assert error_of(reg.get_level, "s").error_code == 40408
    assert reg.get_level("s", default_to_global=True) == "BACKWARD"
    assert reg.set_level("none", "s") == "NONE" and reg.get_level("s") == "NONE" and reg.get_level() == "BACKWARD"
    reg.register("s", record(B_REQUIRED))


def test_error_codes() -> None:
    reg = Registry()
    reg.register("s", record(A))
    assert error_of(reg.versions, "nope").error_code == 40401
    assert error_of(reg.version, "s", "7").error_code == 40402
    assert error_of(reg.version, "s", "x").error_code == 42202
    assert error_of(reg.schema, "99").error_code == 40403
    assert error_of(reg.lookup, "s", record(B_DEFAULT)).error_code == 40403
    assert reg.lookup("s", record(A))["version"] == 1
    invalid = error_of(reg.register, "s", '{"type": "record", "name": "R", "fields": [{"name": "a"}]}')
    assert (invalid.status, invalid.error_code) == (422, 42201)
    assert error_of(reg.register, "s", "").error_code == 42201
    assert error_of(reg.register, "s", record(A), "PROTOBUF").error_code == 42201
    assert error_of(reg.set_level, "SIDEWAYS").error_code == 42203
    assert error_of(reg.check, "nope", "latest", record(A)).error_code == 40401


def test_state_survives_a_restart_with_a_state_file(tmp_path: Path) -> None:
    state = tmp_path / "registry.json"
    reg = Registry(state)
    first = reg.register("s", record(A))
    reg.set_level("FULL", "s")
    again = Registry(state)
    assert again.register("s", record(A)) == first and again.get_level("s") == "FULL"
    assert again.register("other", record(A, B_DEFAULT)) == first + 1
