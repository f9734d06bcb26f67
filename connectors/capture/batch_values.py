"""A Debezium batch's JSON values fetched in one call (``java/platsync/BatchValues.java``).

Fetching each record's value from Python took two JNI crossings per record (``value()`` and
``str()``): 43% of the capture handler's Python time in a bulk (py-spy, issue 19). The Java helper
joins a batch's values into one newline-separated string, which Python splits. Without ``javac``
the capture fetches records one by one, as before: slower, the same otherwise.
"""

from __future__ import annotations

from pathlib import Path

from connectors.capture.java_build import compile_source, debezium_jars
from streams.runtime.settings import Settings

SOURCE = Path(__file__).resolve().parent / "java" / "platsync" / "BatchValues.java"
CLASS_NAME = "platsync.BatchValues"
_COMPILE_JARS = ("debezium-api-",)


def batch_values_classes(settings: Settings) -> Path | None:
    """The directory holding the compiled helper (compiling it first if needed), or None."""
    return compile_source(settings, SOURCE, "platsync/BatchValues.class", debezium_jars(_COMPILE_JARS),
                          "the capture fetches records one by one")


def split_values(text: str, size: int) -> list[str | None] | None:
    """The ``size`` values joined in ``text`` (empty line: a null value), or None if ``text`` does not
    hold exactly ``size`` lines (the caller then fetches the records one by one)."""
    values = text.split("\n")
    if len(values) != size:
        return None
    return [value or None for value in values]
