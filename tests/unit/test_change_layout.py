"""The specialised change-event encoder and decoder step aside (fastavro takes over) for any contract
layout other than the one they were written for (streams/core/change_layout.py)."""

from __future__ import annotations

import copy
import json

import pytest

from streams.core.change_decoder import change_decoder_for
from streams.core.change_encoder import change_encoder_for
from streams.core.change_layout import change_symbols
from streams.core.codec import SCHEMA_DIR

RAW = json.loads((SCHEMA_DIR / "change_event.avsc").read_text(encoding="utf-8"))


@pytest.mark.parametrize("change", ["add a field", "reorder", "retype", "other image value"])
def test_another_contract_layout_gets_no_specialised_encoder_or_decoder(change: str) -> None:
    raw = copy.deepcopy(RAW)
    assert change_symbols(raw) == (("local", "remote"), ("c", "u", "d", "r", "probe"))
    assert change_encoder_for(raw) is not None
    assert change_decoder_for(raw) is not None
    fields = raw["fields"]
    if change == "add a field":
        fields.append({"name": "tenant", "type": ["null", "string"], "default": None})
    elif change == "reorder":
        fields[0], fields[2] = fields[2], fields[0]
    elif change == "retype":
        next(f for f in fields if f["name"] == "version")["type"] = "int"
    else:
        next(f for f in fields if f["name"] == "before")["type"][1]["values"][4] = "bytes"
    assert change_symbols(raw) is None
    assert change_encoder_for(raw) is None
    assert change_decoder_for(raw) is None
