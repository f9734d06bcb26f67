"""The benchmark's FHIR figure: every shipped sample measured, the mean reported."""

from __future__ import annotations

from bench.fhir_cost import SAMPLES, fhir_cost


def test_every_sample_is_measured_and_the_mean_reported() -> None:
    said: list[str] = []
    figures = fhir_cost(said.append, repeat=1)
    names = sorted(p.stem for p in SAMPLES.glob("*.json"))
    assert len(names) == 4 and sorted(k.removeprefix("fhir_ms_") for k in figures if k.startswith("fhir_ms_")) == names
    per_sample = [figures[f"fhir_ms_{n}"] for n in names]
    assert all(v > 0 for v in per_sample) and len(said) == 4
    assert abs(figures["fhir_validate_extract_ms"] - sum(per_sample) / 4) < 0.01
