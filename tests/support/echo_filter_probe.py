"""Feed hand-built Debezium-shaped records to the real compiled ``platsync.EchoFilter``.

Run by ``tests/integration/test_echo_filter.py`` in its own process (a process can start one
JVM): ``python tests/support/echo_filter_probe.py CLASSES_DIR``. Prints one JSON object:
``{"results": [[case, "kept"|"dropped"], ...], "dropped": {name: count}, "errors": {...}}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors.capture.debezium import start_jvm  # noqa: E402
from connectors.capture.echo_filter import CLASS_NAME, dropped_by_filter, filter_properties  # noqa: E402


def main(classes: str) -> None:
    """Run every case and print the outcome."""
    start_jvm([Path(classes)])
    import jpype

    schema_cls = jpype.JClass("org.apache.kafka.connect.data.Schema")
    builder = jpype.JClass("org.apache.kafka.connect.data.SchemaBuilder")
    struct_cls = jpype.JClass("org.apache.kafka.connect.data.Struct")
    record_cls = jpype.JClass("org.apache.kafka.connect.source.SourceRecord")
    hashmap = jpype.JClass("java.util.HashMap")

    source_schema = (builder.struct().field("table", schema_cls.STRING_SCHEMA)
                     .field("txId", schema_cls.OPTIONAL_INT64_SCHEMA).build())
    marker_schema = (builder.struct().optional().field("origin_side", schema_cls.OPTIONAL_STRING_SCHEMA)
                     .field("applied_by_sync", schema_cls.OPTIONAL_BOOLEAN_SCHEMA).build())
    row_schema = builder.struct().optional().field("id", schema_cls.STRING_SCHEMA).build()

    def envelope(table: str, txid: int | None, op: str, after: object, after_schema: object) -> object:
        schema = (builder.struct().field("op", schema_cls.STRING_SCHEMA).field("after", after_schema)
                  .field("source", source_schema).build())
        source = struct_cls(source_schema).put("table", table)
        if txid is not None:
            source.put("txId", jpype.JLong(txid))
        value = struct_cls(schema).put("op", op).put("source", source)
        if after is not None:
            value.put("after", after)
        return record_cls(None, None, "topic", None, schema, value)

    def marker(txid: int, origin: str | None, by_sync: bool | None = False, op: str = "c") -> object:
        after = struct_cls(marker_schema)
        if origin is not None:
            after.put("origin_side", origin)
        if by_sync is not None:
            after.put("applied_by_sync", jpype.JBoolean(by_sync))
        return envelope("platsync_txn_marker", txid, op, after, marker_schema)

    def row(txid: int | None, table: str = "documents") -> object:
        return envelope(table, txid, "c", struct_cls(row_schema).put("id", "d1"), row_schema)

    def make_filter(name: str, max_transactions: int | None = None) -> object:
        props = filter_properties("local", "meta", name)
        config = hashmap()
        for key, value in props.items():
            if key.startswith("transforms.echo."):
                config.put(key.removeprefix("transforms.echo."), value)
        if max_transactions is not None:
            config.put("max.transactions", str(max_transactions))
        f = jpype.JClass(CLASS_NAME)()
        f.configure(config)
        return f

    f = make_filter("probe")
    cases = [
        ("echo marker (origin remote) passes", marker(10, "remote")),
        ("row of the echo transaction", row(10)),
        ("non-synced table in the echo transaction", row(10, "platsync_probe")),
        ("own marker passes", marker(11, "local")),
        ("row of an own transaction", row(11)),
        ("first marker own", marker(12, "local")),
        ("second marker echo", marker(12, "remote")),
        ("row after two markers (first wins)", row(12)),
        ("marker applied_by_sync on own side", marker(13, "local", True)),
        ("row of an applied_by_sync transaction", row(13)),
        ("marker without origin_side", marker(14, None)),
        ("row after a malformed marker", row(14)),
        ("marker update (not an insert)", marker(15, "remote", op="u")),
        ("row after a marker update", row(15)),
        ("row without any marker", row(99)),
        ("row without txId", row(None)),
        ("tombstone", record_cls(None, None, "topic", None, None, None)),
    ]
    results = [(name, "dropped" if f.apply(rec) is None else "kept") for name, rec in cases]

    small = make_filter("bounded", max_transactions=2)
    for txid in (20, 21, 22):
        small.apply(marker(txid, "remote"))
    results.append(("row of an evicted echo transaction", "dropped" if small.apply(row(20)) is None else "kept"))
    results.append(("row of a remembered echo transaction", "dropped" if small.apply(row(22)) is None else "kept"))

    errors = {}
    try:
        jpype.JClass(CLASS_NAME)().configure(hashmap())
    except Exception as exc:  # noqa: BLE001 - the Java exception's message is the result
        errors["empty config"] = str(exc)
    print(json.dumps({"results": results, "errors": errors,
                      "dropped": {n: dropped_by_filter(n) for n in ("probe", "bounded", "never-configured")}}))


if __name__ == "__main__":
    main(sys.argv[1])
