"""Join Debezium change events with the real compiled ``platsync.BatchValues`` in a real JVM.

Run by ``tests/e2e/test_batch_values.py`` in its own process (a process can start one JVM):
``python tests/support/batch_values_probe.py CLASSES_DIR``; reads a JSON list of values (strings or
null) on stdin and prints ``{"text": <the joined string>, "split": <split_values of it>}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors.capture.batch_values import CLASS_NAME, split_values  # noqa: E402
from connectors.capture.debezium import start_jvm  # noqa: E402


def main(classes: str) -> None:
    """Join the values read from stdin as Debezium change events and print the outcome."""
    values = json.loads(sys.stdin.read())
    start_jvm([Path(classes)])
    import jpype

    @jpype.JImplements("io.debezium.engine.ChangeEvent")
    class Event:
        def __init__(self, value: str | None) -> None:
            self._value = value

        @jpype.JOverride
        def key(self) -> object:
            return None

        @jpype.JOverride
        def value(self) -> object:
            return None if self._value is None else jpype.JString(self._value)

        @jpype.JOverride
        def destination(self) -> str:
            return "probe"

        @jpype.JOverride
        def partition(self) -> object:
            return None

        @jpype.JOverride
        def headers(self) -> object:
            return jpype.JClass("java.util.Collections").emptyList()

    records = jpype.JClass("java.util.ArrayList")()
    for value in values:
        records.add(Event(value))
    text = str(jpype.JClass(CLASS_NAME).values(records))
    print(json.dumps({"text": text, "split": split_values(text, len(values))}))


if __name__ == "__main__":
    main(sys.argv[1])
