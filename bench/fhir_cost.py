"""The FHIR documents' cost (issue 17, docs/fhir.md): validation and 6-information extraction per document.

Pure CPU work in the benchmark's own process (no stack): each shipped sample is validated and its 6
information extracted ``repeat`` times after one warm-up (the first validation builds the library's models);
the figure is the mean over the samples of the best of three rounds, in milliseconds per document.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from streams.fhir.extract import extract_six
from streams.fhir.validate import validate_document

SAMPLES = Path(__file__).resolve().parent.parent / "streams" / "fhir" / "samples"


def fhir_cost(say: Callable[[str], None], repeat: int = 50) -> dict[str, float]:
    """``fhir_validate_extract_ms`` (mean over the samples) and one ``fhir_ms_<sample>`` per sample; raises
    ``AssertionError`` if a shipped sample is not valid (the benchmark would measure a refusal)."""
    figures: dict[str, float] = {}
    for path in sorted(SAMPLES.glob("*.json")):
        data = path.read_bytes()
        issues = validate_document(data)
        assert not issues, f"{path.name}: {issues[0]}"
        extract_six(data)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(repeat):
                validate_document(data)
                extract_six(data)
            best = min(best, (time.perf_counter() - started) / repeat)
        figures[f"fhir_ms_{path.stem}"] = round(best * 1000, 3)
        say(f"fhir: {path.name} ({len(data):,} bytes): validation + extraction {best * 1000:.2f} ms")
    per_sample = [v for k, v in figures.items() if k.startswith("fhir_ms_")]
    figures["fhir_validate_extract_ms"] = round(sum(per_sample) / len(per_sample), 3)
    return figures
