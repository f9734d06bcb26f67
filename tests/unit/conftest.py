"""Fixtures the router tables share: the packaged matrix and the real captured signed-record event."""

from __future__ import annotations

import pytest

from streams.core.model import ChangeEvent
from streams.routing.matrix_model import Matrix, load_matrix
from tests.unit.test_envelope import captured_signed_record


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    """The packaged API matrix (streams/routing/matrix.toml), validated."""
    return load_matrix()


@pytest.fixture(scope="module")
def captured() -> ChangeEvent:
    """The real captured signed-record insert (PRV_DOC_006 at the hospital's fructos_own), stamped."""
    return captured_signed_record()
