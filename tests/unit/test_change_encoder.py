"""The specialised change-event encoder writes exactly fastavro's bytes, and steps aside for other layouts."""

from __future__ import annotations

import copy
import json
import random
import string

import pytest

from streams.core.change_encoder import change_encoder_for
from streams.core.codec import SCHEMA_DIR, _fast_change_encoder, decode_change, encode_change, encode_change_generic
from streams.core.model import ChangeEvent

RAW = json.loads((SCHEMA_DIR / "change_event.avsc").read_text(encoding="utf-8"))
TEXT = string.ascii_letters + string.digits + " -_:\"\\'{}" + "山田太郎記名記録患者" + "\u00e9\U0001f600"


def _text(rng: random.Random, longest: int = 40) -> str:
    return "".join(rng.choice(TEXT) for _ in range(rng.randint(0, longest)))


def _value(rng: random.Random) -> object:
    kind = rng.randrange(7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31), 2**62, 2**63 - 1, -(2**63),
                           rng.randint(-(2**63), 2**63 - 1)])
    if kind == 3:
        return rng.choice([0.0, -0.0, 1.5, -2.25e300, 3.141592653589793, float("inf"), rng.uniform(-1e9, 1e9)])
    if kind == 4:
        return _text(rng)
    return rng.randbytes(rng.choice([0, 1, 127, 128, 1024, 5000]))


def _image(rng: random.Random) -> dict[str, object] | None:
    if rng.random() < 0.25:
        return None
    return {_text(rng, 12) or "id": _value(rng) for _ in range(rng.randint(0, 14))}


def _event(rng: random.Random) -> ChangeEvent:
    return ChangeEvent(
        event_id=_text(rng), source_side=rng.choice(["local", "remote"]), source_store=_text(rng, 15),
        table=_text(rng, 15), op=rng.choice(["c", "u", "d", "r", "probe"]), key=_text(rng),
        version=rng.choice([0, 1, 2**40, rng.randint(0, 2**63 - 1)]), row=_image(rng),
        api_id=rng.choice([None, "PRV_DOC_006", _text(rng)]), call_id=rng.choice([None, _text(rng)]),
        origin_side=rng.choice(["local", "remote"]), lsn=rng.randint(0, 2**63 - 1), txid=rng.randint(0, 2**32),
        commit_ts_ms=rng.randint(0, 2**45), captured_ts_ms=rng.randint(0, 2**45), before=_image(rng))


def test_same_bytes_as_fastavro_for_thousands_of_generated_events() -> None:
    assert _fast_change_encoder() is not None  # the codec really uses the specialised encoder
    rng = random.Random(20261201)
    for _ in range(3000):
        event = _event(rng)
        fast = encode_change(event)
        assert fast == encode_change_generic(event), event
        decoded = decode_change(fast)
        assert decoded.row == event.row and decoded.before == event.before and decoded.lsn == event.lsn


def test_values_that_do_not_fit_the_contract_are_refused() -> None:
    rng = random.Random(1)
    good = _event(rng)
    for bad in (
        ChangeEvent(**{**good.__dict__, "source_side": "elsewhere"}),
        ChangeEvent(**{**good.__dict__, "version": 2**63}),
        ChangeEvent(**{**good.__dict__, "key": 12}),  # type: ignore[arg-type]
        ChangeEvent(**{**good.__dict__, "row": {"when": object()}}),  # type: ignore[dict-item]
        ChangeEvent(**{**good.__dict__, "event_id": "\udcff"}),
    ):
        with pytest.raises(ValueError):
            encode_change(bad)


@pytest.mark.parametrize("change", ["add a field", "reorder", "retype", "other image value"])
def test_another_contract_layout_gets_no_specialised_encoder(change: str) -> None:
    raw = copy.deepcopy(RAW)
    assert change_encoder_for(raw) is not None
    fields = raw["fields"]
    if change == "add a field":
        fields.append({"name": "tenant", "type": ["null", "string"], "default": None})
    elif change == "reorder":
        fields[0], fields[2] = fields[2], fields[0]
    elif change == "retype":
        next(f for f in fields if f["name"] == "version")["type"] = "int"
    else:
        next(f for f in fields if f["name"] == "before")["type"][1]["values"][4] = "bytes"
    assert change_encoder_for(raw) is None


def test_cached_column_names_stay_bounded_and_encode_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.core import change_encoder

    monkeypatch.setattr(change_encoder, "_NAMES", {})
    monkeypatch.setattr(change_encoder, "_NAMES_MAX", 3)
    rng = random.Random(7)
    for _ in range(50):  # names repeat (cached) and keep coming (beyond the bound: encoded, not cached)
        event = _event(rng)
        event = ChangeEvent(**{**event.__dict__, "row": {**(event.row or {}), "id": "x", "患者": 1}})
        assert encode_change(event) == encode_change_generic(event)
    assert len(change_encoder._NAMES) == 3
