"""The stack's own end-to-end checks, again on PostgreSQL 18 with ``origin = none``.

Re-exported from their modules, so that pytest runs them here with this package's stack
(``conftest.py``): every API in both directions, and the randomized convergence run (cuts, kills,
then identical stores on both sides and no acknowledged write lost).
"""

from __future__ import annotations

import pytest

from tests.e2e.test_convergence_random import test_random_calls_cuts_and_kills_converge
from tests.e2e.test_sync_apis import test_api_syncs_exactly_its_targets

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]

__all__ = ["test_api_syncs_exactly_its_targets", "test_random_calls_cuts_and_kills_converge"]
