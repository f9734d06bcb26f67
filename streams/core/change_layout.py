"""The layout of ``schemas/change_event.avsc`` that the specialised encoder and decoder were written for.

:mod:`streams.core.change_encoder` and :mod:`streams.core.change_decoder` read and write the change
event's Avro body by hand, field by field; both ask :func:`change_symbols` first, which answers only
if the contract still has exactly this layout, so a changed contract falls back to fastavro instead
of being misread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The contract layout the specialised codec handles: (field, kind) in order.
LAYOUT: tuple[tuple[str, str], ...] = (
    ("event_id", "string"), ("source_side", "enum"), ("source_store", "string"), ("table", "string"),
    ("op", "enum"), ("key", "string"), ("version", "long"), ("row", "image"), ("api_id", "optional"),
    ("call_id", "optional"), ("origin_side", "enum"), ("lsn", "long"), ("txid", "long"), ("commit_ts_ms", "long"),
    ("captured_ts_ms", "long"), ("before", "image"),
)


def _register(kind: Any, named: dict[str, Any]) -> None:
    """Remember every named type (enum, record) defined anywhere inside ``kind``."""
    if isinstance(kind, list):
        for branch in kind:
            _register(branch, named)
    elif isinstance(kind, dict):
        if kind.get("type") in ("enum", "record") and "name" in kind:
            named[kind["name"]] = kind
        for inner in ("values", "items"):
            if inner in kind:
                _register(kind[inner], named)
        for field in kind.get("fields", []):
            _register(field["type"], named)


def _is_image_values(values: Any, named: dict[str, Any]) -> bool:
    """True for the row-image value union: null, boolean, long, double, string, Binary{data: bytes}."""
    if not isinstance(values, list) or len(values) != 6:
        return False
    resolved = [named.get(v, v) if isinstance(v, str) else v for v in values]
    binary = resolved[5]
    return resolved[:5] == ["null", "boolean", "long", "double", "string"] and isinstance(binary, dict) \
        and binary.get("type") == "record" \
        and [(f["name"], f["type"]) for f in binary.get("fields", [])] == [("data", "bytes")]


def _kind(kind: Any, named: dict[str, Any]) -> str:
    """The codec's name for a contract field's type, or ``unsupported``."""
    if isinstance(kind, str) and kind in named:
        kind = named[kind]
    if kind in ("string", "long"):
        return str(kind)
    if isinstance(kind, dict) and kind.get("type") == "enum":
        return "enum"
    if kind == ["null", "string"]:
        return "optional"
    if isinstance(kind, list) and len(kind) == 2 and kind[0] == "null" and isinstance(kind[1], dict) \
            and kind[1].get("type") == "map" and _is_image_values(kind[1].get("values"), named):
        return "image"
    return "unsupported"


def change_symbols(raw_schema: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The symbols of the ``Side`` and ``Op`` enums, in order, if ``raw_schema`` (the parsed .avsc JSON) has
    the layout of :data:`LAYOUT`; None otherwise."""
    named: dict[str, Any] = {}
    _register(dict(raw_schema), named)
    kinds = [(field["name"], _kind(field["type"], named)) for field in raw_schema.get("fields", [])]
    if tuple(kinds) != LAYOUT or not {"Side", "Op"} <= set(named):
        return None
    return tuple(named["Side"]["symbols"]), tuple(named["Op"]["symbols"])
