"""The specialised change-event encoder writes exactly fastavro's bytes (other layouts: test_change_layout.py)."""

from __future__ import annotations

import random

import pytest

from streams.core.codec import _fast_change_encoder, decode_change, encode_change, encode_change_generic
from streams.core.model import ChangeEvent
from tests.support.change_events import random_event


def test_same_bytes_as_fastavro_for_thousands_of_generated_events() -> None:
    assert _fast_change_encoder() is not None  # the codec really uses the specialised encoder
    rng = random.Random(20261201)
    for _ in range(3000):
        event = random_event(rng)
        fast = encode_change(event)
        assert fast == encode_change_generic(event), event
        decoded = decode_change(fast)
        assert decoded.row == event.row and decoded.before == event.before and decoded.lsn == event.lsn


def test_values_that_do_not_fit_the_contract_are_refused() -> None:
    rng = random.Random(1)
    good = random_event(rng)
    for bad in (
        ChangeEvent(**{**good.__dict__, "source_side": "elsewhere"}),
        ChangeEvent(**{**good.__dict__, "version": 2**63}),
        ChangeEvent(**{**good.__dict__, "key": 12}),  # type: ignore[arg-type]
        ChangeEvent(**{**good.__dict__, "row": {"when": object()}}),  # type: ignore[dict-item]
        ChangeEvent(**{**good.__dict__, "event_id": "\udcff"}),
    ):
        with pytest.raises(ValueError):
            encode_change(bad)


def test_cached_column_names_stay_bounded_and_encode_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.core import change_encoder

    monkeypatch.setattr(change_encoder, "_NAMES", {})
    monkeypatch.setattr(change_encoder, "_NAMES_MAX", 3)
    rng = random.Random(7)
    for _ in range(50):  # names repeat (cached) and keep coming (beyond the bound: encoded, not cached)
        event = random_event(rng)
        event = ChangeEvent(**{**event.__dict__, "row": {**(event.row or {}), "id": "x", "患者": 1}})
        assert encode_change(event) == encode_change_generic(event)
    assert len(change_encoder._NAMES) == 3


@pytest.mark.parametrize("size", [0, 63, 64, 127, 128, 4095, 4096, 4097, 70_000])
def test_lengths_around_the_tabled_varints_encode_as_fastavro_does(size: int) -> None:
    event = random_event(random.Random(size))
    text = "x" * (size - 3) + "記" if size >= 3 else "x" * size  # 記 is 3 bytes in UTF-8: exactly size bytes
    assert len(text.encode("utf-8")) == size
    event = ChangeEvent(**{**event.__dict__, "key": text, "version": size,
                           "row": {"s": text, "b": bytes(size), "n": -size}, "before": {"s": text}})
    assert encode_change(event) == encode_change_generic(event)
    assert decode_change(encode_change(event)) == event
